"""The monitoring app's fixtures: a small data lake and MLflow registry written here, Airflow's real auth
manager, and the app mounted as the API server mounts it with only where pipelines, lake, MLflow and Feast
are found replaced."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from airflow_mlops import keys, links
from airflow_mlops.keys import partition
from airflow_mlops.spec import PipelineSpec
from airflow_mlops.steps import audit
from airflow_mlops.steps.registry import MlflowTarget, Promotion
from airflow_mlops.storage import LocalStorage
from airflow_mlops.ui import app as ui
from airflow_mlops.ui import catalog
from tests.conftest import SPEC_PATH

HOSTILE = '<img src=x onerror="alert(1)">'
DAYS = ["2026-01-12", "2026-01-13", "2026-01-14"]


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory, spec: PipelineSpec) -> LocalStorage:
    """Three monitored days (one drift report holding a script, the last one drifted with live metrics per
    version), two validations (one with a hostile column, one published to the offline store)."""
    storage = LocalStorage(tmp_path_factory.mktemp("ui") / "lake")
    for ds, share, retrain in zip(DAYS, [0.1, 0.2, 0.6], [False, False, True], strict=True):
        base = partition(spec.monitoring.reports_path, ds)
        decision = {"retrain": retrain, "reason": f"drift {share:.0%}", "why_not": "below threshold"}
        decision |= {"drift_share": share, "drifted_columns": ["monthly_charges"] if retrain else []}
        decision |= {"prediction_drift": retrain}  # the champion's scores moved with the drift
        storage.write_bytes(f"{base}/decision.json", json.dumps(decision).encode())
        storage.write_bytes(f"{base}/drift.html", f"<html><body><script>1</script>drift of {ds}</body></html>".encode())
    storage.write_bytes(f"{partition(spec.monitoring.reports_path, DAYS[-1])}/performance.html", b"<html>auc</html>")
    for ds, by_version in [
        (DAYS[-2], {"1": {"roc_auc": 0.77, "labelled_rows": 300.0}}),
        (DAYS[-1], {"2": {"roc_auc": 0.49, "log_loss": 0.8, "labelled_rows": 120.0}}),
    ]:
        live = {"roc_auc": 0.5, "labelled_rows": 420.0, "by_version": by_version}
        storage.write_bytes(keys.report(spec, ds, "performance.json"), json.dumps(live).encode())
    storage.write_bytes(f"{keys.offline_partition(spec, '2026-01-05')}/part-0.parquet", b"offline rows")
    outcome = {"expectation": "expect_column_to_exist", "column": HOSTILE, "severity": "block", "success": False}
    blocked = {"suite": "churn_raw", "source": f"/lake/raw/{HOSTILE}", "rows": 5, "passed": False}
    blocked |= {"blocking_failures": [f"missing {HOSTILE}"], "warnings": [], "outcomes": [{**outcome, "detail": ""}]}
    storage.write_bytes("validation/churn/raw/raw__customers__date=2026-01-04.json", json.dumps(blocked).encode())
    passed = {"suite": "churn_raw", "source": "/lake/raw/customers/date=2026-01-05", "rows": 400, "passed": True}
    storage.write_bytes("validation/churn/raw/raw__customers__date=2026-01-05.json", json.dumps(passed).encode())
    storage.root.parent.joinpath("secret.json").write_text('{"password": "hunter2"}')
    for at, action, champion, previous, actor, reason in [
        ("2026-01-11T00:05:00", "promotion", "1", None, "churn_training", "no champion yet"),
        ("2026-01-14T00:05:00", "promotion", "2", "1", "churn_training", "passed roc_auc against champion v1"),
        ("2026-01-15T09:30:00", "rollback", "1", "2", "alice", f"v2 over-predicts {HOSTILE}"),
        ("2026-01-15T10:00:00", "rollback", "2", "1", "alice", "false alarm"),
        ("2026-01-16T00:05:00", "shadow", "2", "1", "churn_training", "v3 shadows champion v2"),
    ]:
        move = Promotion(champion, previous, True, reason)
        challenger = "3" if action == "shadow" else None
        entry = audit.move(
            spec, move, action=action, actor=actor, source="cli", event=f"{at}-{action}", challenger=challenger
        )
        audit.record(storage, spec, {**entry, "at": f"{at}.000000+00:00"})
    return storage


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, spec: PipelineSpec) -> dict[str, Any]:
    """v1 promoted then replaced, v2 champion, v3 rejected with a hostile reason; one run of another pipeline."""
    home = tmp_path_factory.mktemp("mlflow")
    target = MlflowTarget(f"sqlite:///{home / 'mlflow.db'}", artifact_location=(home / "artifacts").as_uri())
    client, name = target.client(), spec.registered_model_name
    client.create_registered_model(name)
    experiment = target.experiment_id(spec.name)
    runs = []
    for version, (as_of, decision, reason, auc) in enumerate(
        [
            ("2026-01-11", "promoted", "no champion yet", 0.81),
            ("2026-01-14", "promoted", "passed roc_auc against champion v1", 0.84),
            ("2026-01-14", "rejected", f"roc_auc too low {HOSTILE}", 0.62),
        ],
        start=1,
    ):
        run = client.create_run(experiment, tags={"pipeline": spec.name, "trigger": HOSTILE})
        client.log_metric(run.info.run_id, "holdout_roc_auc", auc)
        client.create_model_version(name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
        code = {"airflow_bundle_version": "4f2a9c1e0b7d", "spec_sha256": "1a2b3c4d5e6f"} if version == 2 else {}
        for key, value in {"logical_date": as_of, "decision": decision, "decision_reason": reason, **code}.items():
            client.set_model_version_tag(name, str(version), key, value)
        runs.append(run.info.run_id)
    client.set_registered_model_alias(name, "previous", "1")
    client.set_registered_model_alias(name, "champion", "2")
    other = client.create_run(experiment, tags={"pipeline": "someone_else"}).info.run_id
    return {"target": target, "runs": runs, "other_run": other}


@pytest.fixture(scope="module")
def auth() -> Any:
    """Airflow's own auth manager (SimpleAuthManager), as the API server initialises it."""
    from airflow.api_fastapi.app import init_auth_manager
    from airflow.utils import db

    db.initdb()  # token checks look up revoked tokens in the metadata DB
    return init_auth_manager()


def token(auth: Any, role: str | None = "admin") -> str:
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return str(auth.generate_jwt(SimpleAuthManagerUser(username="tester", role=role)))


MATERIALIZED_UNTIL = datetime(2026, 1, 14, tzinfo=UTC)


def feature_views(name: str) -> Any:
    """Feast's registry as the metrics read it: the view's materialisation intervals."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return SimpleNamespace(
        name=name, materialization_intervals=[(start, datetime(2026, 1, 13, tzinfo=UTC)), (start, MATERIALIZED_UNTIL)]
    )


@pytest.fixture
def client(lake: LocalStorage, registry: dict[str, Any], auth: Any, spec: PipelineSpec) -> Iterator[TestClient]:
    """The app mounted at /mlops as the API server mounts it; only where pipelines, lake and MLflow are
    found is replaced (the serialized DAGs are read from the metadata DB in the end-to-end test)."""
    dags = {spec.dag_id(kind): str(SPEC_PATH) for kind in ("features", "training", "monitoring")}  # type: ignore[arg-type]
    ui.app.dependency_overrides = {
        catalog.mlops_dags: lambda: dags,
        ui.lake: lambda: lake,
        ui.mlflow_target: lambda: registry["target"],
        ui.feature_views: lambda: feature_views,
    }
    server = FastAPI()
    server.mount(links.UI_PREFIX, ui.app)
    yield TestClient(server)
    ui.app.dependency_overrides = {}


def as_admin(auth: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(auth)}"}
