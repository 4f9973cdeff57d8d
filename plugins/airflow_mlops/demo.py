"""The level-1 scenario, replayed through the real Airflow scheduler on the embedded stack.

1. generate ``days`` of churn data (a corrupt day, then covariate shift, then concept shift);
2. backfill the first weeks of the feature pipeline with ``airflow backfill create``;
3. trigger the training pipeline for the first champion;
4. backfill the remaining days of features and monitoring: drift and decay trigger training runs,
   whose challengers are promoted or rejected by the gates;
5. print the day-by-day table and where to look.

Scheduled runs are switched off while history is replayed (``[scheduler] use_job_schedule``), so
"today" does not interleave with the past; the DAGs themselves are the production ones.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from airflow_mlops.embedded import PROJECT_ROOT, embedded_env
from airflow_mlops.spec import PipelineSpec, load_spec
from airflow_mlops.stack import Api, airflow_cli, running_stack, wait_for, wait_for_runs

GENERATOR = PROJECT_ROOT / "include" / "demo" / "churn_data.py"
SPEC = PROJECT_ROOT / "include" / "pipelines" / "churn.yaml"


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


def generate(plan: Plan, spec: PipelineSpec, root: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            str(GENERATOR),
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


def backfill(env: dict[str, str], dag_id: str, start: date, end: date, max_active_runs: int) -> None:
    say(f"airflow backfill create --dag-id {dag_id} --from-date {start} --to-date {end}")
    airflow_cli(
        env,
        "backfill",
        "create",
        "--dag-id",
        dag_id,
        "--from-date",
        start.isoformat(),
        "--to-date",
        end.isoformat(),
        "--max-active-runs",
        str(max_active_runs),
        "--reprocess-behavior",
        "completed",
    )


def replay(env: dict[str, str], api: Api, spec: PipelineSpec, plan: Plan, timeout: float) -> None:
    features, training, monitoring = spec.dag_id("features"), spec.dag_id("training"), spec.dag_id("monitoring")
    wait_for(lambda: {features, training, monitoring} <= api.dag_ids(), "the DAGs to be parsed", timeout=180)
    for dag_id in (features, training, monitoring):
        api.unpause(dag_id)
    start = spec.start_date
    first_training = start + timedelta(days=plan.first_training_day)
    last = start + timedelta(days=plan.days - 1)

    backfill(env, features, start, first_training, max_active_runs=2)
    wait_for_runs(api, features, plan.first_training_day + 1, timeout, progress=say)

    say(f"training the first champion on labels known by {first_training}")
    api.trigger(
        training,
        first_training.isoformat() + "T00:00:00Z",
        {"as_of": first_training.isoformat(), "reason": "first champion"},
    )
    wait_for_runs(api, training, 1, timeout, progress=say)

    backfill(env, features, first_training + timedelta(days=1), last, max_active_runs=2)
    backfill(env, monitoring, first_training + timedelta(days=1), last, max_active_runs=1)
    wait_for_runs(api, features, plan.days, timeout, progress=say)
    wait_for_runs(api, monitoring, plan.days - plan.first_training_day - 1, timeout, progress=say)
    wait_for(lambda: all(r["state"] in ("success", "failed") for r in api.runs(training)), "training runs", timeout)


def run(home: Path, plan: Plan, keep_ui: bool = False, timeout: float = 3600, api_port: int = 8080) -> list[Any]:
    from airflow_mlops import history
    from airflow_mlops.steps.registry import MlflowTarget
    from airflow_mlops.storage import open_storage

    spec = load_spec(SPEC)
    fresh_home(home)
    env = {**embedded_env(home, api_port=api_port), "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"}
    say(f"generating {plan.days} days of demo data under {home / 'data'}")
    generate(plan, spec, home / "data")
    say("starting Airflow (api-server, scheduler, dag-processor, triggerer) on SQLite")
    with running_stack(env, home, keep=keep_ui) as api:
        replay(env, api, spec, plan, timeout)
        target = MlflowTarget(**json.loads(env["AIRFLOW_CONN_MLFLOW_DEFAULT"])["extra"])
        rows = history.days(open_storage(str(home / "data")), spec, target)
        print("\n" + history.table(rows) + "\n", flush=True)
        print(where_to_look(env, home), flush=True)
    return rows


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


def where_to_look(env: dict[str, str], home: Path) -> str:
    return "\n".join(
        [
            f"Airflow UI:   {env['AIRFLOW__API__BASE_URL']}  (login admin / admin; rerun with --keep-ui to keep it up)",
            f"MLflow UI:    MLFLOW_TRACKING_URI={env['MLFLOW_TRACKING_URI']} mlflow ui --port 5000",
            f"Reports:      {home / 'data' / 'reports'}",
            f"Quarantine:   {home / 'data' / 'quarantine'}",
            f"Logs:         {home / 'logs'} and {home / 'airflow' / 'logs'}",
        ]
    )
