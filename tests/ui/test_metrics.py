"""/mlops/metrics: what it exposes for the pipeline written in tests/ui/conftest.py, who may read it, and
Debian's real Prometheus scraping it on loopback with the alert rules and the Grafana dashboard of deploy/."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from airflow_mlops.storage import LocalStorage
from airflow_mlops.ui import app as ui
from airflow_mlops.ui import catalog
from tests.conftest import ROOT, prometheus_tool
from tests.ui.conftest import DAYS, MATERIALIZED_UNTIL, as_admin, token

pytestmark = pytest.mark.filterwarnings("ignore")

SCRAPE_TOKEN = "scrape-token-for-tests"
QUARANTINED = "validation/churn/raw/raw__customers__date=2026-01-06.json"


@pytest.fixture
def scraper(client: TestClient) -> TestClient:
    ui.app.dependency_overrides[ui.scrape_token] = lambda: SCRAPE_TOKEN
    return client


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """``(sample name, labels) -> value`` of a Prometheus text exposition."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return found[f"airflow_mlops_{name}", frozenset({"pipeline": "churn", **labels}.items())]


def test_metrics_need_the_scrape_token_or_an_airflow_login(scraper: TestClient, auth: Any) -> None:
    dags = ui.app.dependency_overrides[catalog.mlops_dags]
    looked_up: list[bool] = []
    ui.app.dependency_overrides[catalog.mlops_dags] = lambda: looked_up.append(True) or dags()
    assert scraper.get("/mlops/metrics").status_code == 401
    assert scraper.get("/mlops/metrics", headers={"Authorization": "Bearer wrong-token"}).status_code == 403
    assert looked_up == []  # nothing is read for a caller who is not let in
    for headers in ({"Authorization": f"Bearer {SCRAPE_TOKEN}"}, as_admin(auth)):
        reply = scraper.get("/mlops/metrics", headers=headers)
        assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
        assert 'airflow_mlops_up{pipeline="churn"} 1.0' in reply.text
    nobody = scraper.get("/mlops/metrics", headers={"Authorization": f"Bearer {token(auth, role=None)}"})
    assert nobody.status_code == 200 and 'pipeline="churn"' not in nobody.text  # may read no DAG of it


def test_without_a_metrics_connection_only_airflow_logins_read_metrics(client: TestClient, auth: Any) -> None:
    ui.app.dependency_overrides[ui.scrape_token] = lambda: None
    assert client.get("/mlops/metrics", headers={"Authorization": "Bearer "}).status_code in (401, 403)
    assert client.get("/mlops/metrics", headers=as_admin(auth)).status_code == 200


def test_metrics_of_drift_models_validation_and_freshness(scraper: TestClient, spec: Any) -> None:
    found = samples(scraper.get("/mlops/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"}).text)
    assert value(found, "up") == 1
    # drift: the newest day, each recent day, the threshold and the columns of the newest day
    assert value(found, "drift_share") == 0.6
    assert [value(found, "daily_drift_share", ds=ds) for ds in DAYS] == [0.1, 0.2, 0.6]
    assert value(found, "drift_threshold") == spec.monitoring.drift.max_drifted_share
    assert value(found, "drifted_columns") == 1
    columns = {f.name: value(found, "column_drifted", column=f.name) for f in spec.data.features}
    assert columns["monthly_charges"] == 1 and sum(columns.values()) == 1
    assert value(found, "prediction_drifted") == 1
    assert value(found, "retraining_requested") == 1
    assert value(found, "last_monitored_day_timestamp_seconds") == 1768348800  # 2026-01-14T00:00Z
    # models: each version's newest live metrics, the champion's against its floor, versions by decision
    assert value(found, "live_metric", version="1", metric="roc_auc") == 0.77
    assert value(found, "live_metric", version="2", metric="roc_auc") == 0.49
    assert value(found, "champion_version") == 2
    assert value(found, "champion_live_metric", metric="roc_auc") == 0.49
    assert value(found, "champion_live_metric", metric="log_loss") == 0.8
    assert value(found, "live_metric_floor", metric="roc_auc") == 0.70
    assert value(found, "champion_below_floor", metric="roc_auc") == 1  # 0.49 under 0.70
    assert value(found, "model_versions", decision="promoted") == 2
    assert value(found, "model_versions", decision="rejected") == 1
    assert time.time() - value(found, "last_training_timestamp_seconds") < 3600  # registered by the fixture
    # rows: validated by outcome, the passed day that reached the offline store published
    assert value(found, "validations", stage="raw", outcome="blocked") == 1
    assert value(found, "validated_rows", stage="raw", outcome="passed") == 400
    assert value(found, "validated_rows", stage="raw", outcome="blocked") == 5
    assert value(found, "published_rows") == 400
    assert value(found, "features_materialized_until_timestamp_seconds", feature_view="customer_features") == (
        MATERIALIZED_UNTIL.timestamp()
    )


def test_a_pipeline_that_cannot_be_read_is_down_not_fatal(scraper: TestClient) -> None:
    dags = ui.app.dependency_overrides[catalog.mlops_dags]()
    ui.app.dependency_overrides[catalog.mlops_dags] = lambda: {**dags, "ghost_training": "/gone/ghost.yaml"}

    def feast_down(name: str) -> Any:
        raise OSError("the Feast registry is unreachable")

    ui.app.dependency_overrides[ui.feature_views] = lambda: feast_down
    reply = scraper.get("/mlops/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"})
    assert reply.status_code == 200
    found = samples(reply.text)
    assert found["airflow_mlops_up", frozenset({"pipeline": "/gone/ghost.yaml"}.items())] == 0
    assert value(found, "up") == 0 and ("airflow_mlops_drift_share", frozenset({("pipeline", "churn")})) not in found


# -- Prometheus -------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def served(scraper: TestClient) -> Iterator[str]:
    """The monitoring app (as the client fixture mounts it) on a loopback port, for Prometheus to scrape."""
    server = uvicorn.Server(uvicorn.Config(scraper.app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"127.0.0.1:{server.config.port}"
    server.should_exit = True
    thread.join(10)


def query(base: str, promql: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    with urllib.request.urlopen(url, timeout=5) as reply:
        body = json.load(reply)
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def eventually(check: Any, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if found := check():
                return found
        except OSError:  # Prometheus still starting
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"Prometheus never {what}")  # its log is prometheus.log in the test's tmp_path
        time.sleep(0.5)


@pytest.mark.e2e
def test_prometheus_scrapes_the_metrics_and_the_rules_and_dashboard_work(
    served: str, lake: LocalStorage, tmp_path: Path
) -> None:
    """The compose file's config (deploy/prometheus) with only the target and token path changed."""
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    (tmp_path / "token").write_text(SCRAPE_TOKEN)
    job |= {"static_configs": [{"targets": [served]}], "scrape_interval": "1s", "scrape_timeout": "1s"}
    job["authorization"]["credentials_file"] = str(tmp_path / "token")
    config["global"]["evaluation_interval"] = "1s"
    del config["alerting"]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    (tmp_path / "alerts.yml").write_text((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = (tmp_path / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            prometheus_tool("prometheus"),
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        known_day = eventually(
            lambda: query(base, f'airflow_mlops_daily_drift_share{{pipeline="churn", ds="{DAYS[1]}"}}'), "scraped"
        )
        assert float(known_day[0]["value"][1]) == 0.2
        # a day quarantined after Prometheus started: the counter rises and the rule fires
        lake.write_bytes(QUARANTINED, json.dumps({"suite": "churn_raw", "rows": 7, "passed": False}).encode())
        expected = {"MlopsDatasetDrift", "MlopsChampionBelowFloor", "MlopsRowsQuarantined"}

        def firing() -> set[str]:
            return {a["metric"]["alertname"] for a in query(base, 'ALERTS{alertstate="firing"}')}

        alerts = eventually(lambda: expected <= firing() and firing(), f"fired {expected}")
        assert "MlopsPipelineUnreadable" not in alerts
        # every query of the Grafana dashboard answers on real scrapes (rates need two of them)
        dashboard = json.loads((ROOT / "deploy" / "grafana" / "airflow-mlops.json").read_text())
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                promql = target["expr"].replace("$pipeline", "churn")
                assert eventually(lambda promql=promql: query(base, promql), f"answered {promql}", timeout=10)
    finally:
        lake.delete(QUARANTINED)
        process.terminate()
        process.wait(10)
        log.close()
