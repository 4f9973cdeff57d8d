"""End to end through the real scheduler: Airflow's four components on SQLite, a CLI backfill, the first
champion, daily monitoring, and a drift-triggered training run decided by the gates."""

import sqlite3

import pytest

from airflow_mlops.demo import Plan, run

pytestmark = pytest.mark.e2e


def test_level_one_scenario_through_the_scheduler(tmp_path):
    plan = Plan(days=16, customers=400, first_training_day=10, corrupt_day=4)
    rows = run(tmp_path / "stack", plan, timeout=1500, api_port=18090)

    with sqlite3.connect(tmp_path / "stack" / "airflow" / "airflow.db") as db:
        runs = db.execute("select dag_id, run_id, run_type, state, conf from dag_run").fetchall()
    features = [r for r in runs if r[0] == "churn_features"]
    assert len(features) == plan.days and {r[2] for r in features} == {"backfill"}  # the CLI backfills
    assert [r[1] for r in features if r[3] == "failed"] == ["backfill__2026-01-05T00:00:00+00:00"]  # quarantined
    monitoring = [r for r in runs if r[0] == "churn_monitoring"]
    assert len(monitoring) == plan.days - plan.first_training_day - 1
    assert all(r[3] == "success" for r in monitoring), monitoring
    drift_runs = [r for r in runs if r[0] == "churn_training" and r[1].startswith("drift__")]
    assert drift_runs and all(r[3] == "success" for r in drift_runs), runs

    assert rows[0].champion == "1" and rows[0].drift_share is not None
    triggered = [day for day in rows if day.retrain]
    assert [f"drift__{day.ds}" for day in triggered] == [r[1] for r in drift_runs]
    assert all(day.trained and day.trained[0].decision in ("promoted", "rejected") for day in triggered)
    assert any("cooldown" in day.decision for day in rows)  # drift seen while training is cooling down
