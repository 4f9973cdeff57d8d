"""Scheduled runs through the real scheduler, its cron on: the run it creates by itself processes the last
complete day (not the day that has just begun), and exactly the data a backfill of that day processes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from airflow_mlops import keys
from airflow_mlops.dev.embedded import embedded_env
from airflow_mlops.dev.stack import airflow_cli, running_stack, wait_for, wait_for_runs
from airflow_mlops.spec import load_spec
from airflow_mlops.steps.registry import fingerprint
from airflow_mlops.storage import LocalStorage, read_partition
from tests.conftest import SMALL, churn_data, spec_variant

pytestmark = pytest.mark.e2e

API_PORT = 18110


def test_the_scheduler_processes_the_last_complete_day_as_a_backfill_does(tmp_path):
    today = datetime.now(UTC).date()
    yesterday = today - timedelta(days=1)
    project = tmp_path / "project"
    (project / "dags").mkdir(parents=True)
    spec_path = spec_variant(project, "sched", name="sched", start_date=str(today - timedelta(days=3)))
    (project / "dags" / "sched.py").write_text(
        "# Airflow DAGs from a spec (Airflow's safe mode parses files naming both)\n"
        f"from airflow_mlops.factory import build_pipelines\n\nglobals().update(build_pipelines({str(spec_path)!r}))\n"
    )
    spec, home = load_spec(spec_path), tmp_path / "stack"
    env = embedded_env(home, project=project, api_port=API_PORT)
    lake = LocalStorage(home / "data")
    for back in (3, 2, 1, 0):  # today's day has begun and has rows: a scheduled run must not take it
        ds = today - timedelta(days=back)
        frame = churn_data.snapshot(SMALL, back).assign(event_timestamp=pd.Timestamp(ds, tz="UTC"))
        lake.write_parquet(f"{keys.raw_partition(spec, ds)}/part.parquet", frame)

    with running_stack(env, home) as api:
        wait_for(lambda: "sched_features" in api.dag_ids(), "the DAG processor to parse the DAG", timeout=180)
        api.unpause("sched_features")
        [run] = wait_for_runs(api, "sched_features", 1, timeout=300)
        assert run["run_type"] == "scheduled" and run["state"] == "success", run
        assert run["logical_date"].startswith(str(yesterday)), run
        assert not lake.exists(keys.offline_partition(spec, today))
        scheduled = read_partition(lake, keys.offline_partition(spec, yesterday))

        lake.delete(keys.offline_partition(spec, yesterday))
        airflow_cli(
            env,
            *("backfill", "create", "--dag-id", "sched_features"),
            *("--from-date", str(yesterday), "--to-date", str(yesterday), "--reprocess-behavior", "completed"),
        )
        wait_for(lambda: lake.exists(keys.offline_partition(spec, yesterday)), "the backfill", timeout=300)
        wait_for(lambda: not api.backfill_running("sched_features"), "the backfill to complete", timeout=120)
    backfilled = read_partition(lake, keys.offline_partition(spec, yesterday))
    assert len(scheduled) == SMALL.customers and fingerprint(scheduled) == fingerprint(backfilled)
