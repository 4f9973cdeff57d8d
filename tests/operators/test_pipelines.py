"""The three pipelines under ``dag.test()`` on the small scenario, in the order a deployment lives them:
features (pass, block, re-run) -> first model -> rejected challenger -> monitoring without and with
drift -> the drift-triggered training run -> cooldown.

Tests in this module share one embedded stack and run in file order.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from airflow_mlops import keys
from airflow_mlops.factory import build_pipelines
from airflow_mlops.keys import offline_prefix, partition, quarantine_prefix
from airflow_mlops.steps import audit, registry
from airflow_mlops.steps.registry import MlflowTarget, aliases, champion_version
from airflow_mlops.storage import LocalStorage
from tests.conftest import ALERTS, SMALL, STACK_HOME, churn_data, day, spec_variant

pytestmark = pytest.mark.filterwarnings("ignore")


def variant(tmp: Path, name: str, **changes) -> Path:
    """The demo spec for ``dag.test``: short windows, no waiting for the triggered run, a 2-day cooldown,
    alerts to the loopback receivers."""
    base = {
        "training": {"window_days": 10, "holdout_days": 2},
        "monitoring": {"wait_for_training": False},  # dag.test has no scheduler to run the triggered run
    }
    merged = {k: {**base.get(k, {}), **changes.get(k, {})} for k in {*base, *changes}}
    path = spec_variant(tmp, name, alerts=ALERTS, **merged)  # alerts: to the alert_sinks fixture's receivers
    raw = yaml.safe_load(path.read_text())
    raw["monitoring"]["drift"]["cooldown_days"] = 2
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory, alert_sinks):
    from airflow.utils import db

    db.initdb()
    tmp = tmp_path_factory.mktemp("specs")
    churn_data.write(SMALL, STACK_HOME / "data")
    extra = json.loads(__import__("os").environ["AIRFLOW_CONN_MLFLOW_DEFAULT"])["extra"]
    spec_path = variant(tmp, "churn")
    return {
        "spec_path": spec_path,
        "dags": build_pipelines(spec_path),
        "strict": build_pipelines(
            variant(tmp, "strict", training={"thresholds": {"roc_auc": {"threshold": 0.6, "min_absolute_change": 0.5}}})
        ),
        "storage": LocalStorage(STACK_HOME / "data"),
        "mlflow": MlflowTarget(**extra),
        "alerts": alert_sinks,
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
    blocked = env["alerts"].post("validation_blocked")  # the failure callback, told bad data from a failure
    assert blocked["day"] == str(bad) and "monthly_charges" in blocked["reason"]
    assert blocked["link"].endswith(f"/mlops/validation/{result_key_of(storage, bad)}")
    assert "task_failed" not in env["alerts"].events()

    before = storage.files(offline_prefix(spec), ".parquet")
    dagrun, _ = run(dags["churn_features"], 5)
    assert str(dagrun.state) == "success"
    assert storage.files(offline_prefix(spec), ".parquet") == before  # replaced, not duplicated


def result_key_of(storage, ds) -> str:
    [key] = [k for k in storage.files("validation/churn/raw", ".json") if f"date={ds}" in k]
    return key


def test_first_model_becomes_champion_and_rerun_reuses_it(env, spec):
    env["alerts"].clear()
    dagrun, states = run(env["dags"]["churn_training"], 9, {"as_of": str(day(9)), "reason": "first"})
    assert states["promote_champion"] == "success", (
        states,
        env["mlflow"].client().get_model_version(spec.registered_model_name, "1").tags,
    )
    champion = champion_version(env["mlflow"], spec.registered_model_name)
    assert str(champion.version) == "1"
    assert champion.tags["decision"] == "promoted" and champion.tags["trigger"] == "first"
    assert champion.tags["airflow_run_id"] == dagrun.run_id and champion.tags["data_fingerprint"]
    # the code that trained it: the spec file as read (dag.test runs outside a DAG bundle: no version)
    spec_digest = hashlib.sha256(env["spec_path"].read_bytes()).hexdigest()
    assert champion.tags["spec_sha256"] == spec_digest and "airflow_bundle_version" not in champion.tags
    [move] = audit.trail(env["storage"], spec)
    assert (move["action"], move["champion"], move["previous"]) == ("promotion", "1", None)
    assert move["source"] == f"churn_training/{dagrun.run_id}" and move["actor"] == "churn_training"
    assert env["alerts"].post("promotion")["summary"] == "@champion promoted to v1"

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
    env["alerts"].clear()
    _dagrun, states = run(env["strict"]["churn_training"], 10, {"as_of": str(day(10))})
    assert states["challenger_gate"] == "success"
    assert states["infra_validation"] == "skipped" and states["promote_champion"] == "skipped"
    client = env["mlflow"].client()
    rejected = client.get_model_version(spec.registered_model_name, "2")
    assert rejected.tags["decision"] == "rejected" and "roc_auc" in rejected.tags["decision_reason"]
    assert rejected.tags["trigger"] == "manual"  # no reason in conf: the run type says how it started
    alert = env["alerts"].post("challenger_rejected")
    assert alert["summary"] == "challenger v2 rejected at the gate" and "roc_auc" in alert["reason"]
    assert alert["link"].endswith("#churn-v2") and env["alerts"].events() == ["challenger_rejected"]
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
    assert decision["code"] == {
        "bundle_version": "",
        "spec_sha256": hashlib.sha256(env["spec_path"].read_bytes()).hexdigest(),
    }
    assert storage.exists(monitoring_output(env, spec, 10, "drift.html"))


def test_drift_triggers_training_with_reason_and_report(env, spec):
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    for index in (11, 12, 13):
        run(env["dags"]["churn_features"], index)
    env["alerts"].clear()
    dagrun, states = run(env["dags"]["churn_monitoring"], 13)
    assert states["trigger_training"] == "success", states
    with create_session() as session:
        triggered = (
            session.query(DagRun).filter(DagRun.dag_id == "churn_training", DagRun.run_id == f"drift__{day(13)}").one()
        )
    conf = triggered.conf
    assert conf["as_of"] == str(day(13)) and "drift" in conf["reason"]
    assert conf["report"].endswith("drift.html") and "monthly_charges" in conf["drifted_columns"]
    drift = env["alerts"].post("drift")
    assert drift["day"] == str(day(13)) and drift["reason"].endswith("training triggered")
    assert drift["link"].endswith(f"/mlops/reports/{spec.monitoring.reports_path}/date={day(13)}/drift.html")

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


def test_rollback_from_the_form_and_the_cli_is_audited_and_refused_to_a_rejected_version(env, spec):
    from airflow_mlops.dev.cli import main

    name, target, storage, sinks = spec.registered_model_name, env["mlflow"], env["storage"], env["alerts"]
    # on this small scenario the drift-triggered v3 lost its gate: make it champion as if it had won
    registry.promote(target, name, "3", "won for the test", gated_against="1")
    assert aliases(target, name) == {"champion": "3", "previous": "1"}
    sinks.clear()
    dagrun = env["dags"]["churn_rollback"].test(logical_date=None, run_conf={"reason": "v3 over-predicts churn"})
    assert str(dagrun.state) == "success"
    assert aliases(target, name) == {"champion": "1", "previous": "3"}
    latest = audit.trail(storage, spec)[0]
    assert (latest["action"], latest["champion"], latest["previous"]) == ("rollback", "1", "3")
    assert latest["reason"] == "v3 over-predicts churn" and latest["source"] == f"churn_rollback/{dagrun.run_id}"
    assert latest["actor"] == dagrun.triggering_user_name  # who pressed Trigger
    assert sinks.post("rollback")["summary"] == "@champion rolled back to v1 from v3"

    dagrun = env["dags"]["churn_rollback"].test(logical_date=None, run_conf={"reason": "try v2", "to_version": 2})
    states = {ti.task_id: str(ti.state) for ti in dagrun.get_task_instances()}
    assert states == {"plan_rollback": "failed", "rollback_champion": "upstream_failed"}
    assert aliases(target, name) == {"champion": "1", "previous": "3"}  # nothing moved
    assert "v2 of churn_model was never champion (rejected:" in sinks.post("task_failed")["reason"]

    assert main(["rollback", str(env["spec_path"]), "--reason", "undo"]) == 2  # @previous v3 was rolled back
    assert main(["rollback", str(env["spec_path"]), "--to", "3", "--reason", "v1 is worse", "--actor", "alice"]) == 0
    assert aliases(target, name) == {"champion": "3", "previous": "1"}
    latest = audit.trail(storage, spec)[0]
    assert (latest["actor"], latest["source"], latest["champion"]) == ("alice", "cli", "3")
    assert main(["rollback", str(env["spec_path"]), "--to", "2", "--reason", "no"]) == 2


def test_shadow_rollout_scores_the_challenger_beside_the_champion_then_promotes_it_on_live_labels(env, spec, tmp_path):
    """``training.rollout.mode: shadow``: the challenger that passed the gates becomes @challenger, the
    monitoring DAG scores it beside the champion, and judges it once labels for both have arrived."""
    name, target, storage, sinks = spec.registered_model_name, env["mlflow"], env["storage"], env["alerts"]
    shadow = build_pipelines(
        variant(
            tmp_path,
            "shadow",
            training={"rollout": {"mode": "shadow", "shadow_days": 2}, "thresholds": {"roc_auc": {"threshold": 0.3}}},
        )
    )
    sinks.clear()
    _dagrun, states = run(shadow["churn_training"], 11, {"as_of": str(day(11)), "reason": "shadow test"})
    assert states["promote_champion"] == "success", states
    assert aliases(target, name) == {"champion": "3", "previous": "1", "challenger": "4"}  # the champion stays
    move = audit.trail(storage, spec)[0]
    assert (move["action"], move["champion"], move["challenger"]) == ("shadow", "3", "4")
    assert sinks.post("shadow")["summary"] == "@challenger v4 shadows @champion v3"

    # day 12, the first in shadow: both models score it; no label has arrived for it yet
    _dagrun, states = run(shadow["churn_monitoring"], 12)
    assert states["score_batch"] == "success" and states["judge_challenger"] == "success", states
    beside = pd.read_parquet(storage.path(keys.shadow_predictions(spec, day(12))))
    assert len(beside) == SMALL.customers and beside["model_version"].eq("4").all()
    first = json.loads(storage.read_bytes(monitoring_output(env, spec, 12, "shadow.json")))
    assert (first["verdict"], first["days"], first["challenger"]) == ("shadowing", 1, None)

    # day 15: day 12's labels have arrived; the window is over, MLflow's threshold check on live labels decides
    run(shadow["churn_features"], 15)
    sinks.clear()
    _dagrun, states = run(shadow["churn_monitoring"], 15)
    assert states["judge_challenger"] == "success", states
    judged = json.loads(storage.read_bytes(monitoring_output(env, spec, 15, "shadow.json")))
    assert judged["labelled_rows"] == SMALL.customers and judged["challenger"]["roc_auc"] >= 0.3
    assert judged["verdict"] == "promote" and f"on {SMALL.customers} live labels over 2 days" in judged["reasons"]
    assert aliases(target, name) == {"champion": "4", "previous": "3"}  # @challenger is gone
    promoted = target.client().get_model_version(name, "4").tags
    assert promoted["decision"] == "promoted" and promoted["decision_reason"].startswith("shadow: passed roc_auc")
    move = audit.trail(storage, spec)[0]
    assert (move["action"], move["champion"], move["previous"]) == ("promotion", "4", "3")
    assert sinks.post("promotion")["summary"] == "@champion promoted to v4 from v3"
