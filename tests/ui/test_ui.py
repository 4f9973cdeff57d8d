"""The monitoring page and its report endpoints, through Airflow's real authentication (SimpleAuthManager
JWTs, as header or as the UI's cookie), on a small data lake and MLflow registry written here; and the
operator extra links, built from what a task recorded."""

from __future__ import annotations

import json
import re
from typing import Any
from unittest import mock

import pytest
from fastapi.testclient import TestClient

from airflow_mlops import links
from airflow_mlops.factory import build_pipelines
from airflow_mlops.spec import PipelineSpec
from airflow_mlops.steps.history import Version
from airflow_mlops.storage import LocalStorage
from airflow_mlops.ui import app as ui
from airflow_mlops.ui import catalog, pages
from tests.conftest import SPEC_PATH
from tests.ui.conftest import DAYS, HOSTILE, as_admin, token

pytestmark = pytest.mark.filterwarnings("ignore")

REPORT = "reports/churn/date=2026-01-14/drift.html"
VALIDATION = "validation/churn/raw/raw__customers__date=2026-01-04.json"


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/pipelines/churn",
        f"/reports/{REPORT}",
        f"/validation/{VALIDATION}",
        "/runs/abc",
        "/pipelines/churn/feature-views/customer_features",
    ],
)
def test_every_endpoint_needs_an_airflow_login(client: TestClient, auth: Any, path: str) -> None:
    assert client.get(f"/mlops{path}").status_code == 401
    assert client.get(f"/mlops{path}", headers={"Authorization": "Bearer not-a-jwt"}).status_code == 403
    forged = token(auth).rsplit(".", 1)[0] + ".c2lnbmF0dXJl"
    assert client.get(f"/mlops{path}", cookies={"_token": forged}).status_code == 403


def test_page_shows_champion_history_drift_and_validations(client: TestClient, auth: Any) -> None:
    page = client.get("/mlops/", cookies={"_token": token(auth)})  # the UI's session cookie
    assert page.status_code == 200, page.text
    html = page.text
    assert "Champion: <strong>v2</strong>" in html
    rows = re.findall(r'<tr( class="champion")?><td><span id="churn-v(\d)">', html)
    assert rows == [("", "3"), (' class="champion"', "2"), ("", "1")]  # newest first, champion marked
    assert "passed roc_auc against champion v1" in html and "0.840" in html and "0.620" in html
    assert "<td>4f2a9c1e0b, spec 1a2b3c4d</td>" in html and "<td>unversioned bundle</td>" in html  # code
    assert re.search(r"<td>previous</td>", html)
    assert "<td>60% · scores drifted</td>" in html and "<td>10%</td>" in html  # prediction drift beside the share
    moves = re.findall(
        r'<td>(2026-01-\d\d \d\d:\d\d:\d\d)</td><td><span class="(\w+)">\w+</span></td><td>([^<]+)</td><td>(\w+)</td>',
        html,
    )
    assert moves == [  # the champion's audit trail, newest first
        ("2026-01-16 00:05:00", "shadow", "v3 beside v2", "churn_training"),
        ("2026-01-15 10:00:00", "rollback", "v1 \u2192 v2", "alice"),
        ("2026-01-15 09:30:00", "rollback", "v2 \u2192 v1", "alice"),
        ("2026-01-14 00:05:00", "promotion", "v1 \u2192 v2", "churn_training"),
        ("2026-01-11 00:05:00", "promotion", "v1", "churn_training"),
    ]
    polyline = re.search(r'<polyline points="([^"]+)"', html)
    assert polyline and len(polyline.group(1).split()) == len(DAYS)
    newest, *older = reversed(DAYS)
    assert [
        f"/mlops/reports/reports/churn/date={newest}/drift.html",
        f"/mlops/reports/reports/churn/date={newest}/performance.html",  # once labels have arrived
        *(f"/mlops/reports/reports/churn/date={ds}/drift.html" for ds in older),
    ] == re.findall(r'href="(/mlops/reports/[^"]+)"', html)
    assert re.findall(r'href="(/mlops/validation/[^"]+)"', html) == [
        "/mlops/validation/validation/churn/raw/raw__customers__date=2026-01-05.json",
        "/mlops/validation/validation/churn/raw/raw__customers__date=2026-01-04.json",
    ]


def test_values_from_data_are_escaped(client: TestClient, auth: Any, registry: dict[str, Any]) -> None:
    pages = [
        client.get("/mlops/", headers=as_admin(auth)).text,
        client.get(f"/mlops/validation/{VALIDATION}", headers=as_admin(auth)).text,
        client.get(f"/mlops/runs/{registry['runs'][2]}", headers=as_admin(auth)).text,
    ]
    for html in pages:
        assert HOSTILE not in html
        assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html


def test_a_script_in_a_decision_reason_is_escaped(spec: PipelineSpec) -> None:
    reason = "roc_auc too low <script>alert(1)</script>"
    version = Version("1", "run1", "2026-01-14", "drift", "rejected", reason, {})
    pipeline = catalog.Pipeline(str(SPEC_PATH), ("churn_training",), spec=spec)
    view = catalog.Overview(pipeline, {}, [version], [], {}, {}, [], [])
    html = pages.monitoring_page("Model monitoring", [pages.pipeline_section(view, "/mlops")], "/mlops")
    assert "<script>" not in html
    assert "<td>roc_auc too low &lt;script&gt;alert(1)&lt;/script&gt;</td>" in html


def test_drift_report_is_served_from_its_folder_sandboxed(client: TestClient, auth: Any, lake: LocalStorage) -> None:
    reply = client.get(f"/mlops/reports/{REPORT}", headers=as_admin(auth))
    assert reply.status_code == 200
    assert reply.content == lake.read_bytes(REPORT)
    assert reply.headers["content-type"].startswith("text/html")
    assert reply.headers["content-security-policy"] == "sandbox allow-scripts"
    decision = client.get("/mlops/reports/reports/churn/date=2026-01-14/decision.json", headers=as_admin(auth))
    assert decision.json()["drift_share"] == 0.6


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/reports/reports/churn/%2e%2e/%2e%2e/%2e%2e/secret.json", 400, "'..' path segment"),
        ("/reports/reports/churn/..%2F..%2F..%2Fsecret.json", 400, "'..' path segment"),
        ("/reports/%2Fetc/passwd.json", 400, "not a relative storage key"),
        ("/reports/reports/churn/date=2026-01-14%5C..%5C..%5Csecret.json", 400, "not a relative storage key"),
        ("/reports/validation/churn/raw/raw__customers__date=2026-01-04.json", 404, "not in the reports folder"),
        ("/validation/reports/churn/date=2026-01-14/decision.json", 404, "not in the validation folder"),
        ("/reports/reports/churn/date=2026-01-14/drift.parquet", 404, "only .html, .json"),
        ("/reports/reports/churn/date=2026-02-01/drift.html", 404, "no file"),
    ],
)
def test_report_paths_are_resolved_inside_their_folder(
    client: TestClient, auth: Any, path: str, status: int, message: str
) -> None:
    reply = client.get(f"/mlops{path}", headers=as_admin(auth))
    assert reply.status_code == status, reply.text
    assert message in reply.json()["detail"]
    assert "hunter2" not in reply.text


def test_user_without_dag_access_sees_no_pipeline(client: TestClient, auth: Any, registry: dict[str, Any]) -> None:
    nobody = {"Authorization": f"Bearer {token(auth, role=None)}"}
    page = client.get("/mlops/", headers=nobody)
    assert page.status_code == 200 and "No pipelines you may read" in page.text and "churn_model" not in page.text
    assert client.get(f"/mlops/reports/{REPORT}", headers=nobody).status_code == 404
    assert client.get("/mlops/pipelines/churn", headers=nobody).status_code == 404
    assert client.get(f"/mlops/runs/{registry['runs'][0]}", headers=nobody).status_code == 404


def test_run_page_only_for_runs_of_readable_pipelines(client: TestClient, auth: Any, registry: dict[str, Any]) -> None:
    page = client.get(f"/mlops/runs/{registry['runs'][1]}", headers=as_admin(auth))
    assert page.status_code == 200
    assert "holdout_roc_auc" in page.text and 'href="/mlops/pipelines/churn#churn-v2"' in page.text
    assert client.get(f"/mlops/runs/{registry['other_run']}", headers=as_admin(auth)).status_code == 404
    assert client.get(f"/mlops/runs/{'0' * 32}", headers=as_admin(auth)).status_code == 404  # no such run
    assert client.get("/mlops/runs/x'or'1", headers=as_admin(auth)).status_code == 400


def test_a_spec_that_does_not_load_is_reported_not_fatal(client: TestClient, auth: Any) -> None:
    dags = ui.app.dependency_overrides[catalog.mlops_dags]()  # the churn pipeline, from the client fixture
    ui.app.dependency_overrides[catalog.mlops_dags] = lambda: {**dags, "ghost_training": "/gone/<b>.yaml"}
    html = client.get("/mlops/", headers=as_admin(auth)).text
    assert "Champion: <strong>v2</strong>" in html  # the other pipeline still shows
    assert '<p class="error">The spec does not load: /gone/&lt;b&gt;.yaml: cannot read pipeline spec' in html


def test_unknown_feature_view_is_not_found(client: TestClient, auth: Any) -> None:
    reply = client.get("/mlops/pipelines/churn/feature-views/other_view", headers=as_admin(auth))
    assert reply.status_code == 404 and "no feature view 'other_view'" in reply.json()["detail"]


def test_check_key_refuses_escapes() -> None:
    assert catalog.check_key("reports/churn/date=2026-01-01/drift.html") == "reports/churn/date=2026-01-01/drift.html"
    for bad in ["", "/etc/passwd", "a/../b", "a/./b", "a//b", "..", "a\\b", "s3://bucket/key", "a/b\x00.html"]:
        with pytest.raises(catalog.BadKey):
            catalog.check_key(bad)


# -- operator extra links --------------------------------------------------------------------------------


def recorded(values: dict[str, Any]) -> Any:
    """XCom as the worker sees it in ``finalize``: what this task pushed, by key."""
    return mock.patch(
        "airflow.sdk.execution_time.xcom.XCom.get_value", side_effect=lambda *, ti_key, key: values.get(key)
    )


@pytest.fixture(scope="module")
def tasks() -> dict[str, Any]:
    return {task.task_id: task for dag in build_pipelines(SPEC_PATH).values() for task in dag.tasks}


def test_operators_declare_their_links_and_they_survive_serialization(
    tasks: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.serialization.serialized_objects import DagSerialization

    # As the API server loads DAGs. Airflow keeps this as a class attribute that reading a SerializedDagModel
    # without links (as dag.test's scheduling does) leaves False for the rest of the process.
    monkeypatch.setattr(DagSerialization, "_load_operator_extra_links", True)

    expected = {
        "validate_raw": {"Validation result"},
        "validate_training_set": {"Validation result"},
        "publish_features": {"Feature view"},
        "train_model": {"MLflow run", "Model version"},
        "promote_champion": {"Champion version"},
        "rollback_champion": {"Champion version"},
        "detect_drift": {"Drift report"},
        "performance_report": {"Performance report"},
        "trigger_training": {"Triggered DAG"},  # Airflow's own link to the drift-triggered training run
    }
    assert {
        t: {link.name for link in task.operator_extra_links} for t, task in tasks.items() if task.operator_extra_links
    } == expected
    for dag in build_pipelines(SPEC_PATH).values():
        serialized = DagSerialization.from_dict(DagSerialization.to_dict(dag))
        for task in serialized.tasks:
            assert set(task.extra_links) == expected.get(task.task_id, set())


def test_links_are_built_from_what_the_task_recorded(tasks: dict[str, Any]) -> None:
    base = "http://localhost:18080/mlops"  # [api] base_url of the test stack (conftest)
    key = mock.sentinel.ti_key
    with recorded({"return_value": {"report_key": REPORT, "report": "/abs/path/drift.html"}}):
        assert links.DriftReportLink().get_link(tasks["detect_drift"], ti_key=key) == f"{base}/reports/{REPORT}"
    performance = "reports/churn/date=2026-01-14/performance.html"
    with recorded({"return_value": {"roc_auc": 0.8, "report_key": performance}}):
        link = links.PerformanceReportLink().get_link(tasks["performance_report"], ti_key=key)
        assert link == f"{base}/reports/{performance}"
    with recorded({"validation": {"result_key": VALIDATION, "passed": False}}):
        assert links.ValidationResultLink().get_link(tasks["validate_raw"], ti_key=key) == (
            f"{base}/validation/validation/churn/raw/raw__customers__date=2026-01-04.json"
        )
    local = {"pipeline": "churn", "model": "churn_model", "mlflow_ui": None}  # ModelRecord of a local MLflow store
    with recorded({"return_value": {**local, "experiment_id": "1", "run_id": "abc123", "version": "7"}}):
        assert links.MlflowRunLink().get_link(tasks["train_model"], ti_key=key) == f"{base}/runs/abc123"
        assert links.ModelVersionLink().get_link(tasks["train_model"], ti_key=key) == f"{base}/pipelines/churn#churn-v7"
    with recorded({"return_value": {**local, "champion": "7", "previous": "6"}}):
        assert links.ChampionVersionLink().get_link(tasks["promote_champion"], ti_key=key).endswith("#churn-v7")
    window = {
        "pipeline": "churn",
        "feature_view": "customer_features",
        "start": "2026-01-04T00:00:00+00:00",
        "end": "2026-01-06T00:00:00+00:00",
    }
    with recorded({"return_value": window}):
        assert links.FeatureViewLink().get_link(tasks["publish_features"], ti_key=key) == (
            f"{base}/pipelines/churn/feature-views/customer_features"
            "?start=2026-01-04T00%3A00%3A00%2B00%3A00&end=2026-01-06T00%3A00%3A00%2B00%3A00"
        )
    with recorded({}):  # nothing recorded (the task failed before it wrote anything): no link, no guess
        assert links.DriftReportLink().get_link(tasks["detect_drift"], ti_key=key) == ""
        assert links.ValidationResultLink().get_link(tasks["validate_raw"], ti_key=key) == ""


def test_mlflow_links_go_to_the_mlflow_ui_when_there_is_a_server(
    tasks: dict[str, Any], spec: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_mlops.hooks import MlflowHook

    server = {"conn_type": "mlops_mlflow", "host": "mlflow.internal", "port": 5000}
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_SERVER", json.dumps(server))
    record = MlflowHook("mlflow_server").get_conn().model_record(spec)  # what train_model records
    assert record == {"pipeline": "churn", "model": "churn_model", "mlflow_ui": "http://mlflow.internal:5000"}
    candidate = {**record, "experiment_id": "3", "run_id": "abc123", "version": "7"}
    with (
        mock.patch("airflow_mlops.steps.registry.MlflowTarget.client") as client,
        recorded({"return_value": candidate}),
    ):
        version = links.ModelVersionLink().get_link(tasks["train_model"], ti_key=mock.sentinel.ti_key)
        run = links.MlflowRunLink().get_link(tasks["train_model"], ti_key=mock.sentinel.ti_key)
    client.assert_not_called()
    assert version == "http://mlflow.internal:5000/#/models/churn_model/versions/7"
    assert run == "http://mlflow.internal:5000/#/experiments/3/runs/abc123"


def test_plugin_entry_stays_light() -> None:
    """Plugins load in the DAG processor and every task: the page's app must not be imported with them."""
    import subprocess
    import sys

    heavy = ("fastapi", "mlflow", "airflow_mlops.ui.app")
    code = f"import sys, airflow_mlops.ui.plugin; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
