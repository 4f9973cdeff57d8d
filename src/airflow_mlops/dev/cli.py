"""``airflow-mlops``: validate pipeline specs, print the embedded stack's environment, run the demo."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def _validate(args: argparse.Namespace) -> int:
    from airflow_mlops.spec import SpecError, load_spec

    failures = 0
    for path in args.specs:
        try:
            spec = load_spec(path)
        except SpecError as exc:
            failures += 1
            print(f"INVALID {exc}", file=sys.stderr)
        else:
            dags = ", ".join(spec.dag_id(k) for k in ("features", "training", "monitoring"))
            print(f"ok      {path}: {dags}")
    return 1 if failures else 0


def _env(args: argparse.Namespace) -> int:
    from airflow_mlops.dev.embedded import embedded_env

    for key, value in embedded_env(args.project / args.home, project=args.project, api_port=args.port).items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from airflow_mlops.dev.demo import Plan, run

    first = args.first_training_day if args.first_training_day is not None else args.days // 3
    plan = Plan(days=args.days, customers=args.customers, first_training_day=first)
    run(
        args.project / args.home,
        plan,
        args.project,
        keep_ui=args.keep_ui,
        api_port=args.port,
        production=args.production,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="airflow-mlops", description=__doc__)
    project = argparse.ArgumentParser(add_help=False)  # the stack commands work on a project folder
    project.add_argument(
        "--project",
        type=Path,
        default=Path.cwd(),
        help="the project folder: dags/, plugins/ and include/ (default: the current directory)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    validate = commands.add_parser("validate", help="validate pipeline spec files")
    validate.add_argument("specs", nargs="+", type=Path)
    validate.set_defaults(func=_validate)

    env = commands.add_parser(
        "env", parents=[project], help="print the embedded stack's environment as shell exports (creates its folders)"
    )
    env.add_argument(
        "--home",
        default=".local",
        help="folder for Airflow, MLflow, Feast and data (default .local, in the project folder)",
    )
    env.add_argument("--port", type=int, default=8080)
    env.set_defaults(func=_env)

    demo = commands.add_parser("demo", parents=[project], help="replay the level-1 scenario through the real scheduler")
    demo.add_argument(
        "--home", default=".local/demo", help="folder for the demo's stack (default .local/demo, in the project folder)"
    )
    demo.add_argument("--days", type=int, default=60)
    demo.add_argument("--customers", type=int, default=1000)
    demo.add_argument("--first-training-day", type=int, help="day index of the first champion (default days/3)")
    demo.add_argument("--keep-ui", action="store_true", help="keep Airflow running after the scenario")
    demo.add_argument("--port", type=int, default=8080, help="Airflow API port (production: and the next five)")
    demo.add_argument(
        "--production",
        action="store_true",
        help="run on the production topology as local processes (CeleryExecutor, PostgreSQL, Redis, S3, MLflow server)",
    )
    demo.set_defaults(func=_demo)

    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
