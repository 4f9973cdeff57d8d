"""Chaos through the real scheduler: the process running ``publish_features``, then the one running
``train_model`` (half-way through logging to MLflow, in a run triggered without a logical date), is
killed with SIGKILL. Airflow's retry completes
each run, and the stores are consistent afterwards: the day's features offline once and online with the
newest values, one model version for the training key with all its lineage, no run left RUNNING."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from airflow_mlops import keys
from airflow_mlops.contracts import Tag
from airflow_mlops.dev.embedded import embedded_env
from airflow_mlops.dev.stack import Api, running_stack, wait_for, wait_for_runs
from airflow_mlops.spec import load_spec
from airflow_mlops.steps import features
from airflow_mlops.steps.features import FeastTarget
from airflow_mlops.steps.registry import MlflowTarget, champion_version
from airflow_mlops.storage import LocalStorage
from tests.conftest import ROOT, SPEC_PATH, churn_data

pytestmark = pytest.mark.e2e

API_PORT = 18120
SCENARIO = churn_data.Scenario(days=11, customers=400, corrupt_day=None)


def task_process(ti_id: str) -> int | None:
    """The pid of the process running task instance ``ti_id`` (its title is ``airflow worker -- <id>``)."""
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and f"airflow worker -- {ti_id}".encode() in (entry / "cmdline").read_bytes():
                return int(entry.name)
        except OSError:
            continue
    return None


def kill_while_running(api: Api, dag_id: str, run_id: str, task_id: str, ready: Callable[[], bool]) -> None:
    """SIGKILL the task's process once it runs and ``ready()`` says the moment has come."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        instance = api.task_instance(dag_id, run_id, task_id)
        pid = task_process(instance["id"]) if instance["state"] == "running" else None
        if pid is not None and ready():
            os.kill(pid, signal.SIGKILL)
            return
        time.sleep(0.2)
    raise AssertionError(f"{dag_id}.{task_id} never ran in {run_id}")


def mlflow_runs(home: Path, airflow_run_id: str) -> list[str]:
    """Statuses of the MLflow runs an Airflow run logged to (its ``airflow_run_id`` tag)."""
    try:
        with sqlite3.connect(home / "mlflow" / "mlflow.db", timeout=1) as db:
            rows = db.execute(
                "select r.status from runs r join tags t on t.run_uuid = r.run_uuid where t.key = ? and t.value = ?",
                (Tag.RUN_ID, airflow_run_id),
            ).fetchall()
    except sqlite3.OperationalError:  # not created yet, or busy
        return []
    return [status for (status,) in rows]


def test_killed_tasks_are_retried_to_a_consistent_state(tmp_path):
    spec, home = load_spec(SPEC_PATH), tmp_path / "stack"
    env = {**embedded_env(home, project=ROOT, api_port=API_PORT), "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"}
    lake = LocalStorage(home / "data")
    churn_data.write(SCENARIO, lake.root)
    last = SCENARIO.day(SCENARIO.days - 1)

    # the days before the chaos, published in-process: the training needs them, not their scheduling
    store = FeastTarget(json.loads(env["AIRFLOW_CONN_FEAST_DEFAULT"])["extra"]).store()
    for index in range(SCENARIO.days - 1):
        features.publish(store, lake, spec, SCENARIO.day(index))

    with running_stack(env, home) as api:
        wait_for(lambda: "churn_features" in api.dag_ids(), "the DAG processor to parse the DAGs", timeout=180)
        for dag_id in ("churn_features", "churn_training"):
            api.unpause(dag_id)
        run_id = api.trigger("churn_features", f"{last}T00:00:00Z", {})
        kill_while_running(api, "churn_features", run_id, "publish_features", ready=lambda: True)
        runs = wait_for_runs(api, "churn_features", 1, timeout=600)
        assert [r["state"] for r in runs if r["dag_run_id"] == run_id] == ["success"]
        assert api.task_instance("churn_features", run_id, "publish_features")["try_number"] == 2
        offline = lake.files(keys.offline_prefix(spec), ".parquet")
        days = [SCENARIO.day(index) for index in range(SCENARIO.days)]
        assert offline == [f"{keys.offline_partition(spec, ds)}/part.parquet" for ds in days]
        with sqlite3.connect(home / "feast" / "online.db") as online:
            tables = online.execute("select name from sqlite_master where name like '%customer_features'").fetchall()
            [(table,)] = tables
            stamps = dict(online.execute(f'select event_ts, count(*) from "{table}" group by event_ts').fetchall())
        # every customer has a row each day: online, all hold the last day's values, once per feature
        assert list(stamps.values()) == [SCENARIO.customers * len(spec.data.features)], stamps

        # as docs/operators.md shows a manual run: no logical date, the day in the conf
        run_id = api.trigger("churn_training", None, {"as_of": str(last), "reason": "chaos"})
        kill_while_running(
            api, "churn_training", run_id, "train_model", ready=lambda: "RUNNING" in mlflow_runs(home, run_id)
        )
        [run] = wait_for_runs(api, "churn_training", 1, timeout=600)
        assert run["state"] == "success", run
        assert api.task_instance("churn_training", run_id, "train_model")["try_number"] == 2

    assert sorted(mlflow_runs(home, run_id)) == ["FINISHED", "KILLED"]  # the killed attempt's run, ended
    target = MlflowTarget(f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    [version] = target.client().search_model_versions(f"name = '{spec.registered_model_name}'")
    assert {Tag.TRAINING_KEY, Tag.AS_OF, Tag.DATA_FINGERPRINT, Tag.TRAINING_SET, Tag.RUN_ID} <= set(version.tags)
    assert version.tags[Tag.DECISION] == "promoted"
    assert champion_version(target, spec.registered_model_name).version == version.version
