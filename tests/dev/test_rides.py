"""The regression example (include/examples/rides) as its README runs it, through the real scheduler:
``airflow-mlops up`` on its project, days landed by its own generator, the features backfilled with the
``airflow`` CLI, a first model trained and promoted, a day scored and monitored."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from airflow_mlops import keys
from airflow_mlops.contracts import Tag
from airflow_mlops.dev.embedded import embedded_env
from airflow_mlops.dev.stack import Api, airflow_cli, wait_for_runs
from airflow_mlops.spec import load_spec
from airflow_mlops.steps.registry import champion_version
from tests.conftest import RIDES, rides_data
from tests.dev.up import airflow_mlops_up

pytestmark = pytest.mark.e2e

API_PORT = 18300
DAYS = 12


def test_the_regression_example_trains_and_monitors_on_the_stack_up_starts(tmp_path: Path) -> None:
    project, home = tmp_path / "rides", tmp_path / "home"
    shutil.copytree(RIDES, project, ignore=shutil.ignore_patterns("__pycache__", "samples"))
    rides_data.write(home / "data", days=DAYS)  # README: python rides_data.py .local/data --days 21
    env = embedded_env(home, project=project, api_port=API_PORT)  # what `airflow-mlops env` prints
    with airflow_mlops_up(project, home, API_PORT) as seen:
        assert any(line.startswith("DAGs, unpaused, schedules off") for line in seen), "".join(seen)
        api = Api(f"http://localhost:{API_PORT}")
        last = f"2026-03-{DAYS:02d}"
        airflow_cli(env, "backfill", "create", "--dag-id", "rides_features", "--from-date", "2026-03-01",
                    "--to-date", last)  # fmt: skip
        features = wait_for_runs(api, "rides_features", DAYS, timeout=900)
        assert {run["state"] for run in features} == {"success"}
        api.trigger("rides_training", None, {"as_of": last, "reason": "first model"})
        [training] = wait_for_runs(api, "rides_training", 1, timeout=900)
        assert training["state"] == "success"
        api.trigger("rides_monitoring", f"{last}T00:00:00Z", {})
        [monitoring] = wait_for_runs(api, "rides_monitoring", 1, timeout=600)
        assert monitoring["state"] == "success"

    from airflow_mlops.hooks import MlflowHook
    from airflow_mlops.steps import registry

    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        target = MlflowHook().get_conn()
        champion = champion_version(target, "rides_model")
        assert champion is not None and champion.tags[Tag.TASK] == "regression"
        metrics = registry.registered_candidate(target, "rides_model", champion).metrics
    assert metrics["rmse"] < 25.0 and metrics["r2"] > 0.5  # the spec's floors: it passed the gate on them
    spec = load_spec(project / "include" / "pipelines" / "rides.yaml")
    decision = json.loads((home / "data" / keys.report(spec, last, keys.DECISION)).read_text())
    assert decision["drift_share"] >= 0 and "retrain" in decision
