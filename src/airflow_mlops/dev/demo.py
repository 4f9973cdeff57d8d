"""The level-1 scenario, replayed through the real Airflow scheduler, on the embedded stack or on the
production topology run as local processes (:mod:`airflow_mlops.dev.production`).

1. generate ``days`` of churn data (a corrupt day, then covariate shift, then concept shift);
2. backfill the first weeks of the feature pipeline with ``airflow backfill create``;
3. trigger the training pipeline for the first champion;
4. backfill the remaining days of features and monitoring: drift and decay trigger training runs,
   whose challengers are promoted or rejected by the gates;
5. print the day-by-day table and where to look.

Scheduled runs are switched off while history is replayed (``[scheduler] use_job_schedule``), so
"today" does not interleave with the past; the DAGs themselves are the production ones. The driver
reads the lake and MLflow through the same Airflow connections the tasks use.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from airflow_mlops import keys
from airflow_mlops.dev.embedded import embedded_env
from airflow_mlops.dev.stack import COMPONENTS, Api, Deployment, airflow_cli, running_stack, wait_for, wait_for_runs
from airflow_mlops.spec import PipelineSpec, load_spec

if TYPE_CHECKING:
    from airflow_mlops.steps.history import Day
    from airflow_mlops.storage import Storage

# The demo's files, in the project folder (a checkout of this repository, or a project laid out like it).
GENERATOR = Path("include/demo/churn_data.py")
SPEC = Path("include/pipelines/churn.yaml")


@dataclass(frozen=True)
class Plan:
    days: int = 60
    customers: int = 1000
    first_training_day: int = 20
    corrupt_day: int = 9

    @property
    def covariate_shift_day(self) -> int:
        return self.first_training_day + (self.days - self.first_training_day) // 3

    @property
    def concept_shift_day(self) -> int:
        return self.first_training_day + 2 * (self.days - self.first_training_day) // 3


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def generate(plan: Plan, spec: PipelineSpec, root: Path, project: Path) -> None:
    generator = project / GENERATOR
    if not generator.exists():
        raise SystemExit(f"{generator} not found: run the demo from a checkout of airflow-mlops, or pass --project")
    subprocess.run(
        [
            sys.executable,
            str(generator),
            "--out",
            str(root),
            "--start",
            spec.start_date.isoformat(),
            "--days",
            str(plan.days),
            "--customers",
            str(plan.customers),
            "--corrupt-day",
            str(plan.corrupt_day),
            "--covariate-shift-day",
            str(plan.covariate_shift_day),
            "--concept-shift-day",
            str(plan.concept_shift_day),
        ],
        check=True,
    )


def backfill(
    env: dict[str, str], api: Api, dag_id: str, start: date, end: date, max_active_runs: int | None = None
) -> None:
    # The scheduler marks a backfill complete a loop after its last run finishes; the next one must wait.
    wait_for(lambda: not api.backfill_running(dag_id), f"the previous backfill of {dag_id} to complete", timeout=120)
    limit = ("--max-active-runs", str(max_active_runs)) if max_active_runs else ()
    command = ("backfill", "create", "--dag-id", dag_id, "--from-date", start.isoformat(), "--to-date", end.isoformat())
    say(f"airflow {' '.join((*command, *limit))}")
    airflow_cli(env, *command, *limit, "--reprocess-behavior", "completed")


def replay(env: dict[str, str], api: Api, spec: PipelineSpec, plan: Plan, timeout: float) -> None:
    features, training, monitoring = spec.dag_id("features"), spec.dag_id("training"), spec.dag_id("monitoring")
    dag_ids = {features, training, monitoring, spec.dag_id("rollback")}  # rollback: runs only when triggered
    wait_for(lambda: dag_ids <= api.dag_ids(), "the DAGs to be parsed", timeout=180)
    for dag_id in sorted(dag_ids):
        api.unpause(dag_id)
    start = spec.start_date
    first_training = start + timedelta(days=plan.first_training_day)
    last = start + timedelta(days=plan.days - 1)

    backfill(env, api, features, start, first_training, max_active_runs=2)
    wait_for_runs(api, features, plan.first_training_day + 1, timeout, progress=say)

    say(f"training the first champion on labels known by {first_training}")
    api.trigger(
        training,
        first_training.isoformat() + "T00:00:00Z",
        {"as_of": first_training.isoformat(), "reason": "first champion"},
    )
    wait_for_runs(api, training, 1, timeout, progress=say)

    backfill(env, api, features, first_training + timedelta(days=1), last, max_active_runs=2)
    # Airflow's default concurrency: the monitoring DAG decides days in order by itself.
    backfill(env, api, monitoring, first_training + timedelta(days=1), last)
    wait_for_runs(api, features, plan.days, timeout, progress=say)
    wait_for_runs(api, monitoring, plan.days - plan.first_training_day - 1, timeout, progress=say)
    wait_for(lambda: all(r["state"] in ("success", "failed") for r in api.runs(training)), "training runs", timeout)


def land(plan: Plan, spec: PipelineSpec, lake: Storage, scratch: Path, project: Path) -> None:
    """Generate the scenario's raw partitions into the lake: in place on a local lake, else generated
    under ``scratch`` and uploaded the way a producer would land them."""
    from airflow_mlops.storage import LocalStorage

    if isinstance(lake, LocalStorage):
        generate(plan, spec, lake.root, project)
        return
    generate(plan, spec, scratch, project)
    for path in sorted(p for p in scratch.rglob("*") if p.is_file()):
        lake.write_bytes(path.relative_to(scratch).as_posix(), path.read_bytes())


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """``env`` in this process too, so the driver resolves connections exactly as the tasks do."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def play(
    deployment: Deployment,
    home: Path,
    plan: Plan,
    project: Path,
    *,
    keep_ui: bool = False,
    timeout: float = 3600,
) -> list[Day]:
    """Land the data, start Airflow on ``deployment``, replay the scenario, print the day-by-day table."""
    from airflow_mlops.hooks import LakeHook, MlflowHook
    from airflow_mlops.steps import history

    spec = load_spec(project / SPEC)
    env = {**deployment.env, "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"}
    with environment(env):
        lake = LakeHook().get_conn()
        target = MlflowHook().get_conn()
        say(f"generating {plan.days} days of demo data into {lake.uri}")
        land(plan, spec, lake, home / "landing", project)
        names = ", ".join([*COMPONENTS, *(worker.name for worker in deployment.workers)])
        say(f"starting Airflow ({names}) with {env['AIRFLOW__CORE__EXECUTOR']}")
        with running_stack(env, home, keep=keep_ui, workers=deployment.workers, needs=deployment.needs) as api:
            replay(env, api, spec, plan, timeout)
            rows = history.days(lake, spec, history.versions(target, spec))
            print("\n" + history.table(rows, spec.training.primary_metric) + "\n", flush=True)
            print(where_to_look(env, lake, spec, home), flush=True)
    return rows


def run(
    home: Path,
    plan: Plan,
    project: Path,
    keep_ui: bool = False,
    timeout: float = 3600,
    api_port: int = 8080,
    production: bool = False,
) -> list[Day]:
    """The scenario from a clean ``home``: on the embedded stack, or with ``production`` on the production
    topology as local processes (PostgreSQL and Redis must be running; see ``scripts/production.sh``).
    The DAGs, the spec and the data generator are the ``project`` folder's."""
    project = project.resolve()
    fresh_home(home)
    if not production:
        deployment = Deployment(embedded_env(home, project=project, api_port=api_port))
        return play(deployment, home, plan, project, keep_ui=keep_ui, timeout=timeout)
    from airflow_mlops.dev.production import describe, local_production

    with local_production(home, api_port, project) as (topology, deployment):
        say(f"production topology:\n{describe(topology)}")
        return play(deployment, home, plan, project, keep_ui=keep_ui, timeout=timeout)


MARKER = ".airflow-mlops-demo"


def fresh_home(home: Path) -> None:
    """The scenario replays from day one: clear a previous demo's state, and only a demo's."""
    if (home / MARKER).exists():
        say(f"removing the previous demo run under {home}")
        shutil.rmtree(home)
    elif home.exists() and any(home.iterdir()):
        raise SystemExit(f"{home} exists and is not a demo folder: choose another --home")
    home.mkdir(parents=True, exist_ok=True)
    (home / MARKER).touch()


def where_to_look(env: dict[str, str], lake: Storage, spec: PipelineSpec, home: Path) -> str:
    tracking = env["MLFLOW_TRACKING_URI"]
    mlflow_ui = tracking if tracking.startswith("http") else f"MLFLOW_TRACKING_URI={tracking} mlflow ui --port 5000"
    return "\n".join(
        [
            f"Airflow UI:   {env['AIRFLOW__API__BASE_URL']}  (login admin / admin; rerun with --keep-ui to keep it up)",
            f"MLflow UI:    {mlflow_ui}",
            f"Reports:      {lake.location(keys.reports_prefix(spec))}",
            f"Quarantine:   {lake.location(keys.quarantine_prefix(spec))}",
            f"Logs:         {home / 'logs'} and {home / 'airflow' / 'logs'}",
            f'Stack\'s env:  eval "$(.venv/bin/airflow-mlops env --home {home})"  (for the two commands below)',
            f"Predictions:  .venv/bin/airflow-mlops serve {spec.name}  (then POST ids to http://127.0.0.1:8090/predict)",
            f"Roll back:    .venv/bin/airflow-mlops rollback {spec.name} --reason '...'"
            f"  (or trigger the {spec.dag_id('rollback')} DAG)",
        ]
    )
