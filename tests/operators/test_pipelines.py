"""The three pipelines under ``dag.test()`` on the small scenario, in the order a deployment lives them:
features (pass, block, re-run) -> first model -> rejected challenger -> monitoring without and with
drift -> the drift-triggered training run -> cooldown.

Tests in this module share one embedded stack and run in file order.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from airflow_mlops.factory import build_pipelines
from airflow_mlops.keys import offline_prefix, partition, quarantine_prefix
from airflow_mlops.steps.registry import MlflowTarget, champion_version
from airflow_mlops.storage import LocalStorage
from tests.conftest import SMALL, STACK_HOME, churn_data, day, spec_variant

pytestmark = pytest.mark.filterwarnings("ignore")


def variant(tmp: Path, name: str, **changes) -> Path:
    """The demo spec for ``dag.test``: short windows, no waiting for the triggered run, a 2-day cooldown."""
    base = {
        "training": {"window_days": 10, "holdout_days": 2},
        "monitoring": {"wait_for_training": False},  # dag.test has no scheduler to run the triggered run
    }
    path = spec_variant(tmp, name, **{k: {**base.get(k, {}), **changes.get(k, {})} for k in {*base, *changes}})
    raw = yaml.safe_load(path.read_text())
    raw["monitoring"]["drift"]["cooldown_days"] = 2
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from airflow.utils import db

    db.initdb()
    tmp = tmp_path_factory.mktemp("specs")
    churn_data.write(SMALL, STACK_HOME / "data")
    extra = json.loads(__import__("os").environ["AIRFLOW_CONN_MLFLOW_DEFAULT"])["extra"]
    return {
        "dags": build_pipelines(variant(tmp, "churn")),
        "strict": build_pipelines(
            variant(tmp, "strict", training={"thresholds": {"roc_auc": {"threshold": 0.6, "min_absolute_change": 0.5}}})
        ),
        "storage": LocalStorage(STACK_HOME / "data"),
        "mlflow": MlflowTarget(**extra),
    }


def run(dag, index: int, conf: dict | None = None):
    dagrun = dag.test(logical_date=datetime.combine(day(index), datetime.min.time(), UTC), run_conf=conf)
    return dagrun, {ti.task_id: str(ti.state) for ti in dagrun.get_task_instances()}


def online_rows_at(ts: datetime) -> int:
    with sqlite3.connect(STACK_HOME / "feast" / "online.db") as db:
        table = db.execute("select name from sqlite_master where name like '%customer_features'").fetchone()[0]
        return db.execute(
            f"select count(*) from {table} where event_ts = ?", (ts.strftime("%Y-%m-%d %H:%M:%S"),)
        ).fetchone()[0]


def monitoring_output(env, spec, index: int, name: str) -> str:
    return f"{partition(spec.monitoring.reports_path, day(index))}/{name}"


def test_features_pass_block_and_rerun(env, spec):
    dags, storage = env["dags"], env["storage"]
    for index in range(0, 10):
        dagrun, states = run(dags["churn_features"], index)
        if index == SMALL.corrupt_day:
            assert states == {
                "wait_for_partition": "success",
                "validate_raw": "failed",
                "publish_features": "upstream_failed",
            }
        else:
            assert str(dagrun.state) == "success", states
    bad = day(SMALL.corrupt_day)
    assert storage.exists(partition(quarantine_prefix(spec), bad))
    assert not storage.exists(partition(spec.data.raw_path, bad))
    assert not storage.exists(partition(offline_prefix(spec), bad))
    assert online_rows_at(datetime.combine(bad, datetime.min.time())) == 0
    result = json.loads(storage.read_bytes(storage.files("validation/churn/raw", ".json")[SMALL.corrupt_day]))
    assert not result["passed"] and any("monthly_charges" in f for f in result["blocking_failures"])

    before = storage.files(offline_prefix(spec), ".parquet")
    dagrun, _ = run(dags["churn_features"], 5)
    assert str(dagrun.state) == "success"
    assert storage.files(offline_prefix(spec), ".parquet") == before  # replaced, not duplicated


def test_first_model_becomes_champion_and_rerun_reuses_it(env, spec):
    dagrun, states = run(env["dags"]["churn_training"], 9, {"as_of": str(day(9)), "reason": "first"})
    assert states["promote_champion"] == "success", (
        states,
        env["mlflow"].client().get_model_version(spec.registered_model_name, "1").tags,
    )
    champion = champion_version(env["mlflow"], spec.registered_model_name)
    assert str(champion.version) == "1"
    assert champion.tags["decision"] == "promoted" and champion.tags["trigger"] == "first"
    assert champion.tags["airflow_run_id"] == dagrun.run_id and champion.tags["data_fingerprint"]

    run(env["dags"]["churn_training"], 9, {"as_of": str(day(9)), "reason": "again"})
    versions = env["mlflow"].client().search_model_versions(f"name = '{spec.registered_model_name}'")
    assert len(versions) == 1  # the same date and data never registers a second version


def test_a_manual_run_without_a_logical_date_trains(env, spec):
    """``airflow dags trigger churn_training --conf '{"as_of": ...}'`` with no date, as docs/operators.md shows."""
    dagrun = env["dags"]["churn_training"].test(logical_date=None, run_conf={"as_of": str(day(9))})
    states = {ti.task_id: str(ti.state) for ti in dagrun.get_task_instances()}
    assert dagrun.logical_date is None and str(dagrun.state) == "success", states
    assert str(champion_version(env["mlflow"], spec.registered_model_name).version) == "1"  # the same model


def test_challenger_that_is_not_better_is_registered_but_not_promoted(env, spec):
    _dagrun, states = run(env["strict"]["churn_training"], 10, {"as_of": str(day(10))})
    assert states["challenger_gate"] == "success"
    assert states["infra_validation"] == "skipped" and states["promote_champion"] == "skipped"
    client = env["mlflow"].client()
    rejected = client.get_model_version(spec.registered_model_name, "2")
    assert rejected.tags["decision"] == "rejected" and "roc_auc" in rejected.tags["decision_reason"]
    assert rejected.tags["trigger"] == "manual"  # no reason in conf: the run type says how it started
    assert str(champion_version(env["mlflow"], spec.registered_model_name).version) == "1"


def test_monitoring_without_drift_scores_and_does_not_retrain(env, spec):
    run(env["dags"]["churn_features"], 10)
    dagrun, states = run(env["dags"]["churn_monitoring"], 10)
    assert str(dagrun.state) == "success", states
    assert states["trigger_training"] == "skipped"
    storage = env["storage"]
    predictions = pd.read_parquet(
        storage.path(f"{partition(spec.monitoring.predictions_path, day(10))}/predictions.parquet")
    )
    assert len(predictions) == SMALL.customers and predictions["model_version"].eq("1").all()
    decision = json.loads(storage.read_bytes(monitoring_output(env, spec, 10, "decision.json")))
    assert decision["retrain"] is False and decision["drift_share"] < 0.3
    assert storage.exists(monitoring_output(env, spec, 10, "drift.html"))


def test_drift_triggers_training_with_reason_and_report(env, spec):
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    for index in (11, 12, 13):
        run(env["dags"]["churn_features"], index)
    dagrun, states = run(env["dags"]["churn_monitoring"], 13)
    assert states["trigger_training"] == "success", states
    with create_session() as session:
        triggered = (
            session.query(DagRun).filter(DagRun.dag_id == "churn_training", DagRun.run_id == f"drift__{day(13)}").one()
        )
    conf = triggered.conf
    assert conf["as_of"] == str(day(13)) and "drift" in conf["reason"]
    assert conf["report"].endswith("drift.html") and "monthly_charges" in conf["drifted_columns"]

    dagrun, states = run(env["dags"]["churn_training"], 13, conf)
    assert str(dagrun.state) == "success", states
    with create_session() as session:  # dag.test ran it under its own run id; retire the queued one
        session.query(DagRun).filter(DagRun.run_id == f"drift__{day(13)}").update({"state": "success"})
    newest = env["mlflow"].client().search_model_versions(f"name = '{spec.registered_model_name}'")
    version = max(newest, key=lambda v: int(v.version))
    assert version.tags["trigger"].startswith("drift-triggered") and version.tags["drift_report"] == conf["report"]


def test_cooldown_holds_back_the_next_drift_day(env, spec):
    run(env["dags"]["churn_features"], 14)
    _dagrun, states = run(env["dags"]["churn_monitoring"], 14)
    assert states["trigger_training"] == "skipped", states
    decision = json.loads(
        env["storage"].read_bytes(f"{partition(spec.monitoring.reports_path, day(14))}/decision.json")
    )
    assert decision["retrain"] is False and decision["why_not"].startswith("cooldown")
