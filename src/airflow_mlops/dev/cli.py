"""``airflow-mlops``: create a pipeline project, check it as CI would, validate pipeline specs, roll a
champion back, serve online predictions, run the embedded stack for a project or print its environment,
run the demo."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from pathlib import Path

from airflow_mlops.task_types import TASK_TYPES


def _validate(args: argparse.Namespace) -> int:
    from airflow_mlops.spec import SpecError, check_apart, load_spec

    failures, loaded = 0, []
    paths = [p for path in args.specs for p in (sorted(path.glob("*.y*ml")) if path.is_dir() else [path])]
    for path in paths:
        try:
            spec = load_spec(path)
        except SpecError as exc:
            failures += 1
            print(f"INVALID {exc}", file=sys.stderr)
        else:
            loaded.append(spec)
            dags = ", ".join(spec.dag_id(k) for k in ("features", "training", "monitoring", "rollback"))
            print(f"ok      {path}: {dags}")
    try:  # specs validated together run on one stack: they must not share where they write
        check_apart(loaded)
    except SpecError as exc:
        failures += 1
        print(f"INVALID {exc}", file=sys.stderr)
    return 1 if failures else 0


def _ci(args: argparse.Namespace) -> int:
    import tempfile
    import time

    from airflow_mlops.ci.checks import Project, run_ci
    from airflow_mlops.ci.report import junit_xml, summary

    project = Project.at(args.project, args.specs, args.dags)
    log = args.log or Path(tempfile.mkdtemp(prefix="airflow-mlops-ci-")) / "run.log"
    print(f"airflow-mlops ci {project.root}", flush=True)
    started = time.monotonic()
    checks = run_ci(project, budget_ms=args.parse_budget_ms, sample_run=args.run, log=log)
    print(summary(checks, time.monotonic() - started))
    if args.junit:
        junit_xml(checks, args.junit)
        print(f"JUnit XML: {args.junit}")
    if args.run:
        print(f"log of the small-data run: {log}")
    return 0 if all(c.ok for c in checks) else 1


def _init(args: argparse.Namespace) -> int:
    from airflow_mlops.ci.scaffold import scaffold

    target = args.path or Path(args.name)
    try:
        scaffold(target, args.name, owner=args.owner, task=args.task)
    except (ValueError, FileExistsError) as exc:  # a bad name (SpecError), a folder in use, no install
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"created {target}: {args.task} pipeline {args.name!r}, with CI for GitHub Actions, Jenkins and GitLab")
    print(f"  cd {shlex.quote(str(target))} && airflow-mlops ci .   # what CI runs on every push")
    return 0


def _deploy(args: argparse.Namespace) -> int:
    import tempfile

    from airflow_mlops.ci.checks import Project
    from airflow_mlops.ci.deploy import DeployRefused, deploy

    project = Project.at(args.project, args.specs, args.dags)
    log = args.log or Path(tempfile.mkdtemp(prefix="airflow-mlops-deploy-")) / "run.log"
    try:
        done = deploy(project, args.env, args.ref, sample_run=args.run, log=log)
    except DeployRefused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        if log.exists():
            print(f"log of the small-data run: {log}", file=sys.stderr)
        return 1
    was = done.previous[:12] if done.previous else "nothing"
    print(f"{done.environment}: {done.branch} -> {done.commit[:12]} (was {was}); {len(done.checks)} CI checks passed")
    return 0


def find_spec(args: argparse.Namespace) -> Path:
    """The spec file of ``args.pipeline``: itself when it is a file, else the spec in ``--specs`` (default:
    the project's ``include/pipelines``) whose name it is."""
    from airflow_mlops.spec import SpecError, load_spec

    pipeline, specs = args.pipeline, args.specs or args.project / "include" / "pipelines"
    if Path(pipeline).is_file():
        return Path(pipeline)
    candidates = sorted([*specs.glob("*.yaml"), *specs.glob("*.yml")]) if specs.is_dir() else []
    for path in candidates:
        try:
            if load_spec(path).name == pipeline:
                return path
        except SpecError:
            continue
    raise SystemExit(f"no pipeline named {pipeline!r} in {specs} (give a spec file, or --specs FOLDER)")


def _rollback(args: argparse.Namespace) -> int:
    from airflow_mlops.hooks import LakeHook, MlflowHook
    from airflow_mlops.links import ChampionVersionLink
    from airflow_mlops.notifications import move_alert, send_alert
    from airflow_mlops.spec import load_spec
    from airflow_mlops.steps import audit, registry

    spec = load_spec(find_spec(args))
    target = MlflowHook(args.mlflow_conn_id or MlflowHook.default_conn_name).get_conn()
    storage = LakeHook(args.lake_conn_id or LakeHook.default_conn_name).get_conn()
    name = spec.registered_model_name
    try:
        plan = registry.plan_rollback(target, name, args.to)
        moved = registry.rollback(target, name, plan, args.reason)
    except registry.RollbackRefused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    actor = args.actor or os.environ.get("USER") or os.environ.get("LOGNAME") or f"uid {os.getuid()}"
    entry = audit.move(
        spec, moved, action="rollback", actor=actor, source="cli", event=audit.unique_event_id("rollback")
    )
    key = audit.record(storage, spec, entry)
    link = ChampionVersionLink().url({**target.model_record(spec), "champion": moved.champion})
    send_alert(spec, move_alert(entry, link), {})
    print(f"{name}: @champion v{plan.from_version} -> v{plan.to_version} (v{plan.from_version} is @previous)")
    print(f"recorded in {storage.location(key)}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from airflow_mlops.hooks import FeastHook, MlflowHook
    from airflow_mlops.serving.app import create_app

    app = create_app(
        str(find_spec(args)),
        mlflow_conn_id=args.mlflow_conn_id or MlflowHook.default_conn_name,
        feast_conn_id=args.feast_conn_id or FeastHook.default_conn_name,
        reload_interval_s=args.reload_interval,
    )
    uvicorn.run(app, host=args.host, port=args.port, workers=1, log_level="info")
    return 0


def _env(args: argparse.Namespace) -> int:
    from airflow_mlops.dev.embedded import embedded_env

    for key, value in embedded_env(args.project / args.home, project=args.project, api_port=args.port).items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


def _up(args: argparse.Namespace) -> int:
    """The embedded stack for the project's own DAGs, in the foreground until Ctrl+C."""
    from airflow_mlops.dev.embedded import embedded_env

    project = args.project.resolve()
    home = project / args.home
    env = embedded_env(home, project=project, api_port=args.port)
    source = f"{project / 'dags'}"
    if args.git_branch:
        from airflow_mlops.dev.embedded import git_bundle_env

        env.update(git_bundle_env(args.git_repo or str(project), args.git_branch))
        source = f"branch {args.git_branch} of {args.git_repo or project}"
    if not args.schedule:  # the scheduler creates no scheduled runs: triggered runs and backfills only
        env["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] = "False"
    print(f"starting Airflow for {source} (state and logs in {home})", flush=True)
    # Ctrl+C (or kill -INT) stops the stack, also when a shell started it in the background with SIGINT ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return _run_until_interrupted(env, home, project, args)
    except KeyboardInterrupt:  # Ctrl+C while starting: the components are stopped on the way out
        return 130


def _run_until_interrupted(env: dict[str, str], home: Path, project: Path, args: argparse.Namespace) -> int:
    from airflow_mlops.dev.stack import StackError, running_stack, wait_for

    with running_stack(env, home, keep=True) as api:
        try:
            wait_for(lambda: bool(api.dag_ids()), "the DAG processor to parse the project's DAGs", timeout=180)
        except StackError:
            print(f"no DAGs in {project / 'dags'} yet: add a DAG file (docs/custom-model.md)", flush=True)
        dags = sorted(api.dag_ids())
        for dag_id in dags:
            api.set_paused(dag_id, args.paused)
        if args.paused:
            state = "paused (nothing runs until you unpause a DAG in the UI)"
        elif args.schedule:
            state = "scheduled"
        else:
            state = "unpaused, schedules off (the runs you trigger or backfill run; --schedule runs schedules too)"
        print(f"DAGs, {state}: {', '.join(dags) or 'none'}", flush=True)
        ui = env["AIRFLOW__API__BASE_URL"]
        print(f"Airflow UI: {ui} (admin / admin); the airflow CLI in another shell:", flush=True)
        print(f'  eval "$(airflow-mlops env --project {project} --home {args.home} --port {args.port})"', flush=True)
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

    validate = commands.add_parser(
        "validate", help="validate pipeline spec files (or folders of them) that are to run on one stack"
    )
    validate.add_argument("specs", nargs="+", type=Path)
    validate.set_defaults(func=_validate)

    checked = argparse.ArgumentParser(add_help=False)  # commands that run the CI checks on a project
    checked.add_argument("project", nargs="?", type=Path, default=Path.cwd(), help="the project (default: here)")
    checked.add_argument(
        "--run",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run each pipeline end to end on its sample (default); --no-run: specs and DAG files only",
    )
    checked.add_argument("--specs", type=Path, help="folder of pipeline specs (default: PROJECT/include/pipelines)")
    checked.add_argument("--dags", type=Path, help="DAG folder (default: PROJECT/dags)")
    checked.add_argument("--log", type=Path, help="where the small-data run's log goes (default: a temporary folder)")
    ci = commands.add_parser(
        "ci",
        parents=[checked],
        help="check a project as CI would: specs, DAG files, parse time, each pipeline end to end on a small sample",
    )
    ci.add_argument("--parse-budget-ms", type=float, default=100, help="most a DAG file may take to parse (100)")
    ci.add_argument("--junit", type=Path, help="write the results as JUnit XML here, for the CI system to show")
    ci.set_defaults(func=_ci)

    deliver = commands.add_parser(
        "deploy",
        parents=[checked],
        help="deliver a commit of a project (a git checkout) to an environment of its deploy.yaml: the CI checks, "
        "the gate of a previous environment, then the branch its DAG bundle tracks moves",
    )
    deliver.add_argument("--env", required=True, help="the environment, as named in deploy.yaml")
    deliver.add_argument("--ref", default="HEAD", help="the commit, branch or tag to deploy (default: HEAD)")
    deliver.set_defaults(func=_deploy)

    init = commands.add_parser(
        "init", help="create a pipeline project: DAG file, spec, suites, sample data, CI definitions"
    )
    init.add_argument("name", help="the first pipeline's name (lowercase, digits, _), also the folder's")
    init.add_argument("--path", type=Path, help="the project folder to create (default: ./NAME)")
    init.add_argument("--owner", default="ml-team", help="owner of its DAGs (default: ml-team)")
    init.add_argument(
        "--task", choices=TASK_TYPES, default="binary", help="what the pipeline predicts (default: binary)"
    )
    init.set_defaults(func=_init)

    pipeline = argparse.ArgumentParser(add_help=False, parents=[project])  # commands on one pipeline's model
    pipeline.add_argument("pipeline", help="the pipeline's name (a spec in --specs) or its spec file")
    pipeline.add_argument("--specs", type=Path, help="folder of pipeline specs (default: include/pipelines)")
    pipeline.add_argument("--mlflow-conn-id", help="MLflow connection (default: mlflow_default)")

    rollback = commands.add_parser(
        "rollback",
        parents=[pipeline],
        help="move a pipeline's @champion back to @previous (or --to VERSION), recorded in its audit trail",
    )
    rollback.add_argument("--reason", required=True, help="why: kept in the audit trail and sent with the alert")
    rollback.add_argument("--to", help="the version to go back to (default: @previous); it must have been champion")
    rollback.add_argument("--actor", help="who rolls back (default: the OS user)")
    rollback.add_argument("--lake-conn-id", help="data lake connection (default: mlops_storage)")
    rollback.set_defaults(func=_rollback)

    serve = commands.add_parser(
        "serve", parents=[pipeline], help="serve online predictions: @champion over the Feast online store"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    serve.add_argument("--port", type=int, default=8090)
    serve.add_argument("--reload-interval", type=float, default=10, help="seconds between looks at @champion")
    serve.add_argument("--feast-conn-id", help="Feast connection (default: feast_default)")
    serve.set_defaults(func=_serve)

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

    up = commands.add_parser(
        "up", parents=[project], help="run the embedded stack for the project's DAGs until Ctrl+C (which stops it)"
    )
    up.add_argument(
        "--home", default=".local", help="folder for Airflow, MLflow, Feast and data (default .local, in the project)"
    )
    up.add_argument("--port", type=int, default=8080, help="Airflow API and UI port (the next two: log servers)")
    runs = up.add_mutually_exclusive_group()
    runs.add_argument(
        "--schedule",
        action="store_true",
        help="run the DAGs' schedules too (default: only the runs you trigger or backfill run)",
    )
    runs.add_argument("--paused", action="store_true", help="pause every DAG: nothing runs until unpaused in the UI")
    up.add_argument(
        "--git-branch",
        help="read the DAGs from this branch (a GitDagBundle, as deploy moves it) instead of the dags/ folder",
    )
    up.add_argument("--git-repo", help="the repository of --git-branch: a path or URL (default: the project)")
    up.set_defaults(func=_up)

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
