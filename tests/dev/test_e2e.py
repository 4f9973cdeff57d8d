"""End to end through the real scheduler: Airflow's four components on SQLite, a CLI backfill, the first
champion, daily monitoring, and a drift-triggered training run decided by the gates. Then, on the
finished stack, the Airflow UI as a user meets it: each task's extra links, and the monitoring page in
headless Chromium. The scenario runs once for the module (it takes minutes)."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from airflow_mlops import keys
from airflow_mlops.dev.demo import Plan, run
from airflow_mlops.dev.embedded import embedded_env
from airflow_mlops.dev.stack import Api, Component, StackError, airflow_bin, supervised, wait_for
from airflow_mlops.spec import load_spec
from airflow_mlops.steps.history import Day
from airflow_mlops.storage import LocalStorage
from tests.conftest import ROOT

pytestmark = pytest.mark.e2e

PLAN = Plan(days=16, customers=400, first_training_day=10, corrupt_day=4)
DEMO_PORT, UI_PORT, LINEAGE_PORT = 18090, 18100, 18133
CHROMIUM = Path("/usr/bin/chromium")
DOCS_SCREENSHOT = ROOT / "docs" / "ui-monitoring.png"  # refreshed with UPDATE_DOCS_SCREENSHOT=1
DOCS_CONNECTION_FORM = ROOT / "docs" / "connection-form.png"
SCRAPE_TOKEN = "e2e-scrape-token"


@dataclass(frozen=True)
class Scenario:
    home: Path
    rows: list[Day]
    lineage: list[dict[str, Any]]  # the OpenLineage events the tasks sent


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    """The demo's scenario, with OpenLineage's HTTP transport pointed at a sink on loopback
    (``OPENLINEAGE_URL``, which the stack's processes inherit)."""
    home = tmp_path_factory.mktemp("e2e") / "stack"
    events: list[dict[str, Any]] = []

    class Sink(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            events.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    sink = ThreadingHTTPServer(("127.0.0.1", LINEAGE_PORT), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    try:
        with mock.patch.dict(os.environ, {"OPENLINEAGE_URL": f"http://127.0.0.1:{LINEAGE_PORT}"}):
            rows = run(home, PLAN, ROOT, timeout=1500, api_port=DEMO_PORT)
        yield Scenario(home, rows, events)
    finally:
        sink.shutdown()


def test_level_one_scenario_through_the_scheduler(scenario: Scenario) -> None:
    rows = scenario.rows
    with sqlite3.connect(scenario.home / "airflow" / "airflow.db") as db:
        runs = db.execute("select dag_id, run_id, run_type, state, conf, logical_date from dag_run").fetchall()
    features = [r for r in runs if r[0] == "churn_features"]
    assert len(features) == PLAN.days and {r[2] for r in features} == {"backfill"}  # the CLI backfills
    # data intervals: the backfill run of 2026-01-05 covers [01-05, 01-06) and is named after when it
    # would have run; it processed 2026-01-05, the quarantined day
    assert [(r[1], r[5][:10]) for r in features if r[3] == "failed"] == [
        ("backfill__2026-01-06T00:00:00+00:00", "2026-01-05")
    ]
    monitoring = [r for r in runs if r[0] == "churn_monitoring"]
    assert len(monitoring) == PLAN.days - PLAN.first_training_day - 1
    assert all(r[3] == "success" for r in monitoring), monitoring
    drift_runs = [r for r in runs if r[0] == "churn_training" and r[1].startswith("drift__")]
    assert drift_runs and all(r[3] == "success" for r in drift_runs), runs

    assert rows[0].champion == "1" and rows[0].drift_share is not None
    # each version records the spec file that trained it (the local DAG bundle has no version to record)
    spec_digest = hashlib.sha256((ROOT / "include" / "pipelines" / "churn.yaml").read_bytes()).hexdigest()
    assert {v.spec_digest for day in rows for v in day.trained} == {spec_digest}
    triggered = [day for day in rows if day.retrain]
    assert [f"drift__{day.ds}" for day in triggered] == [r[1] for r in drift_runs]
    assert all(day.trained and day.trained[0].decision in ("promoted", "rejected") for day in triggered)
    assert any("cooldown" in day.decision for day in rows)  # drift seen while training is cooling down

    # The demo backfills monitoring with Airflow's default concurrency (several days at once): days are
    # still decided in order, so one training run per cooldown window, and every day after a promotion
    # is scored by the model it promoted.
    spec = load_spec(ROOT / "include" / "pipelines" / "churn.yaml")
    asked = [date.fromisoformat(day.ds) for day in triggered]
    assert all((b - a).days >= spec.monitoring.drift.cooldown_days for a, b in pairwise(asked)), asked
    promoted = sorted(
        (v for day in rows for v in day.trained if v.decision == "promoted"), key=lambda v: int(v.version)
    )
    lake = LocalStorage(scenario.home / "data")
    for day in rows:
        expected = [v.version for v in promoted if v.as_of < day.ds] or ["1"]
        scored = pd.read_parquet(lake.path(keys.predictions(spec, day.ds)))["model_version"].unique().tolist()
        assert scored == [expected[-1]], (day.ds, scored, expected)


def test_openlineage_events_connect_raw_data_features_training_set_model_and_reports(scenario: Scenario) -> None:
    """What each task sent through Airflow's OpenLineage provider: datasets named by their location
    (``file`` namespace on the embedded stack), linked output to input from the raw partition to the
    reports, with the GX gate's assertions on the data it checked."""
    spec = load_spec(ROOT / "include" / "pipelines" / "churn.yaml")
    lake = LocalStorage(scenario.home / "data")
    # the events that ended task runs with the operator's datasets (the scheduler may also report a state
    # change of a run, without them)
    ended: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for event in scenario.lineage:
        with_datasets = bool(event["inputs"] or event["outputs"])
        if event["eventType"] in ("COMPLETE", "FAIL") and "." in event["job"]["name"] and with_datasets:
            dag_id, task_id = event["job"]["name"].split(".", 1)
            ended.setdefault((dag_id, task_id), {})[event["run"]["runId"]] = event

    def names(event: dict[str, Any], side: str) -> set[str]:
        return {d["name"] for d in event[side]}

    # the raw gate: every landed day checked with its assertions; the corrupt day failed and quarantined
    gates = list(ended["churn_features", "validate_raw"].values())
    assert len(gates) == PLAN.days
    failed = [e for e in gates if e["eventType"] == "FAIL"]
    corrupt = date(2026, 1, 1 + PLAN.corrupt_day)  # the scenario starts on 2026-01-01
    assert [names(e, "inputs") for e in failed] == [{lake.location(keys.raw_partition(spec, corrupt))}]
    assertions = failed[0]["inputs"][0]["inputFacets"]["dataQualityAssertions"]["assertions"]
    assert any(a["column"] == "monthly_charges" and not a["success"] for a in assertions), assertions
    assert names(failed[0], "outputs") == {lake.location(keys.quarantine_partition(spec, corrupt))}
    passed = next(e for e in gates if e["eventType"] == "COMPLETE")
    assert all(a["success"] for a in passed["inputs"][0]["inputFacets"]["dataQualityAssertions"]["assertions"])

    # features: the offline partition with its row count, and the feature view in its Feast project
    published = next(iter(ended["churn_features", "publish_features"].values()))
    offline = next(d for d in published["outputs"] if d["namespace"] == "file")
    assert offline["outputFacets"]["outputStatistics"]["rowCount"] == PLAN.customers
    assert {"namespace": "feast://mlops", "name": "customer_features"}.items() <= next(
        d for d in published["outputs"] if d["namespace"] != "file"
    ).items()

    # training set -> model version -> scoring, each task's output the next one's input
    built = {d["name"] for e in ended["churn_training", "build_training_set"].values() for d in e["outputs"]}
    trained = list(ended["churn_training", "train_model"].values())
    assert all(names(e, "inputs") <= built for e in trained)
    models = {d["name"] for e in trained for d in e["outputs"]}
    assert "models/churn_model/1" in models
    scored = ended["churn_monitoring", "score_batch"].values()
    assert {d["name"] for e in scored for d in e["inputs"] if d["name"].startswith("models/")} <= models
    drift = ended["churn_monitoring", "detect_drift"].values()
    assert all(any(d["name"].endswith("/drift.html") for d in e["outputs"]) for e in drift)


def answers(api: Api) -> bool:
    try:
        api.token()
    except (OSError, StackError):
        return False
    return True


@pytest.fixture(scope="module")
def ui(scenario: Scenario) -> Iterator[Api]:
    """Only Airflow's API server (which serves the UI and the plugin), on the finished scenario's home."""
    env = embedded_env(scenario.home, project=ROOT, api_port=UI_PORT)
    env["AIRFLOW_CONN_MLOPS_METRICS"] = json.dumps({"conn_type": "generic", "password": SCRAPE_TOKEN})
    server = Component("ui-api-server", (airflow_bin(), "api-server"))
    with supervised([server], env, scenario.home / "logs") as running:
        api = Api(env["AIRFLOW__API__BASE_URL"])
        wait_for(lambda: running.check() and answers(api), "the API server to answer", timeout=180)
        yield api


def fetch(api: Api, path: str, logged_in: bool = True) -> tuple[int, str, str]:
    """Status, content type and body of a GET on the UI server, as admin or without any credentials."""
    headers = {"Authorization": f"Bearer {api.token()}"} if logged_in else {}
    request = urllib.request.Request(f"{api.base_url}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


def on_ui(link: str) -> str:
    """A stored link's path: links carry the demo stack's base URL; the same files are served here."""
    parts = urlsplit(link)
    assert f"{parts.scheme}://{parts.netloc}" == f"http://localhost:{DEMO_PORT}", link
    return parts.path + (f"?{parts.query}" if parts.query else "")


def test_each_task_links_to_what_it_produced(ui: Api, scenario: Scenario) -> None:
    monitoring = ui.runs("churn_monitoring")[-1]["dag_run_id"]
    drift = ui.links("churn_monitoring", monitoring, "detect_drift")["Drift report"]
    status, kind, body = fetch(ui, on_ui(drift))
    stored = scenario.home / "data" / urlsplit(drift).path.removeprefix("/mlops/reports/")
    assert status == 200 and kind.startswith("text/html") and body == stored.read_text(), drift

    first_training = next(r["dag_run_id"] for r in ui.runs("churn_training") if r["conf"]["reason"] == "first champion")
    trained = ui.links("churn_training", first_training, "train_model")
    status, _, body = fetch(ui, on_ui(trained["MLflow run"]))
    assert status == 200 and "holdout_roc_auc" in body and "first champion" in body
    assert trained["Model version"].endswith("/mlops/pipelines/churn#churn-v1")
    assert fetch(ui, on_ui(trained["Model version"]))[0] == 200
    promoted = ui.links("churn_training", first_training, "promote_champion")["Champion version"]
    assert promoted == trained["Model version"]

    quarantined = ui.links("churn_features", "backfill__2026-01-06T00:00:00+00:00", "validate_raw")  # 01-05
    status, _, body = fetch(ui, on_ui(quarantined["Validation result"]))  # the task failed; its result is linked
    assert status == 200 and '<span class="failed">failed</span>' in body

    published = ui.links("churn_features", "backfill__2026-01-16T00:00:00+00:00", "publish_features")  # 01-15
    status, _, body = fetch(ui, on_ui(published["Feature view"]))
    assert status == 200 and "customer_features" in body and "monthly_charges" in body, body[:2000]

    assert fetch(ui, on_ui(drift), logged_in=False)[0] == 401  # the same report, without a login


def test_metrics_for_prometheus_tell_what_the_scenario_did(ui: Api, scenario: Scenario) -> None:
    """/mlops/metrics with the mlops_metrics connection's token, read from the real stores: Feast's registry
    (materialisation), the lake (drift, validation, offline store) and MLflow (versions, aliases)."""
    request = urllib.request.Request(
        f"{ui.base_url}/mlops/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        text = response.read().decode()
    found = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return found[f"airflow_mlops_{name}", tuple(sorted({"pipeline": "churn", **labels}.items()))]

    assert value("up") == 1
    monitored = [day for day in scenario.rows if day.drift_share is not None]
    assert [value("daily_drift_share", ds=day.ds) for day in monitored] == [day.drift_share for day in monitored]
    newest = date.fromisoformat(monitored[-1].ds)
    assert value("last_monitored_day_timestamp_seconds") == datetime.combine(newest, time(), UTC).timestamp()
    # Feast materialised up to the end of the newest day the features DAG published
    assert value("features_materialized_until_timestamp_seconds", feature_view="customer_features") == (
        datetime(2026, 1, 1 + PLAN.days, tzinfo=UTC).timestamp()
    )
    assert value("validations", stage="raw", outcome="blocked") == 1  # the corrupt day
    assert value("validated_rows", stage="raw", outcome="passed") == value("published_rows") > 0
    promoted = {v.version for day in scenario.rows for v in day.trained if v.decision == "promoted"} | {"1"}
    assert value("model_versions", decision="promoted") == len(promoted)
    assert str(int(value("champion_version"))) == max(promoted, key=int)


def test_connections_test_button_reaches_each_service(ui: Api, scenario: Scenario) -> None:
    """What the UI's Test button calls (``POST /api/v2/connections/test``) for the stack's three connections,
    each of its own type, against the lake folder, MLflow's store and Feast's registry and online store."""
    env = embedded_env(scenario.home, project=ROOT, api_port=UI_PORT)
    answers = {}
    for conn_id in ("mlops_storage", "mlflow_default", "feast_default"):
        definition = json.loads(env[f"AIRFLOW_CONN_{conn_id.upper()}"])
        body = {
            "connection_id": conn_id,
            "conn_type": definition["conn_type"],
            "extra": json.dumps(definition["extra"]),
        }
        request = urllib.request.Request(
            f"{ui.base_url}/api/v2/connections/test",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {ui.token()}", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            answers[definition["conn_type"]] = json.loads(response.read())
    assert answers == {
        "mlops_lake": {"status": True, "message": f"data lake at {scenario.home / 'data'} is a writable folder"},
        "mlops_mlflow": {
            "status": True,
            "message": f"MLflow at {json.loads(env['AIRFLOW_CONN_MLFLOW_DEFAULT'])['extra']['tracking_uri']} answers",
        },
        "mlops_feast": {
            "status": True,
            "message": "Feast project 'mlops': registry read (1 feature view(s)), sqlite online store open",
        },
    }


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_monitoring_page_in_a_browser(ui: Api, scenario: Scenario, tmp_path: Path) -> None:
    """Log in to the Airflow UI, find the page in the navigation, follow a drift report link and see it render."""
    from playwright.sync_api import expect, sync_playwright

    assert CHROMIUM.exists(), "Debian's chromium is missing: run scripts/browser.sh"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1280, "height": 1000},
        )
        page = browser.new_page()
        page.set_default_timeout(120_000)  # the first page load imports MLflow in the API server
        expect.set_options(timeout=120_000)
        page.goto(f"{ui.base_url}/mlops/")
        assert "Not authenticated" in page.content()  # no session yet

        page.goto(f"{ui.base_url}/")
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill("admin")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(lambda url: "/auth/" not in url)

        page.goto(f"{ui.base_url}/plugin/mlops")  # the navigation entry: the page inside the Airflow UI
        frame = page.frame_locator("iframe")
        expect(frame.get_by_role("heading", name="churn")).to_be_visible()

        page.goto(f"{ui.base_url}/mlops/")
        champion = [day.champion for day in scenario.rows][-1]
        expect(page.get_by_text(f"Champion: v{champion}")).to_be_visible()
        expect(page.locator("svg polyline")).to_have_count(1)
        expect(page.locator("tr.champion")).to_have_count(1)
        screenshot = DOCS_SCREENSHOT if os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1" else tmp_path / "monitoring.png"
        page.screenshot(path=str(screenshot), full_page=True)

        page.get_by_role("link", name="drift report").first.click()
        page.wait_for_url("**/mlops/reports/reports/churn/**/drift.html")
        expect(page.get_by_text("Share of Drifted Columns")).to_be_visible()  # drawn by the report's own scripts

        # the connection form of the lake's type: its own fields, from the provider's conn-fields
        page.goto(f"{ui.base_url}/connections")
        page.get_by_role("button", name="Add Connection").click()
        page.locator("input[name=connection_id]").fill("mlops_storage")
        page.get_by_role("combobox").fill("Data lake")
        page.get_by_role("option", name="Data lake (airflow-mlops)").click()
        page.get_by_role("button", name="Extra Fields", exact=True).click()
        expect(page.get_by_text("Lake root")).to_be_visible()
        expect(page.locator("#element_aws_conn_id")).to_have_value("aws_default")
        page.locator("#element_root").fill("s3://my-bucket/lake")
        form = DOCS_CONNECTION_FORM if os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1" else tmp_path / "form.png"
        page.screenshot(path=str(form))
        browser.close()
