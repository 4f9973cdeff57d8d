"""Shared fixtures: the demo spec, small generated data in a throwaway data lake, and local MLflow/Feast."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest

from airflow_mlops.dev.embedded import embedded_env

if TYPE_CHECKING:
    from airflow_mlops.steps.registry import Candidate, MlflowTarget

ROOT = Path(__file__).resolve().parents[1]
SPEC_PATH = ROOT / "include" / "pipelines" / "churn.yaml"
DEV_TESTS = ROOT / "tests" / "dev"
RIDES = ROOT / "include" / "examples" / "rides"  # the regression example, a project of its own
sys.path.insert(0, str(ROOT / "include" / "demo"))
sys.path.insert(0, str(RIDES))
# Airflow reads its configuration on first import: point it at a throwaway embedded stack first.
STACK_HOME = Path(tempfile.mkdtemp(prefix="airflow-mlops-tests-"))
os.environ.update(embedded_env(STACK_HOME, project=ROOT, api_port=18080))
os.environ.update(GX_ANALYTICS_ENABLED="false", MLFLOW_DISABLE_TELEMETRY="true")

import churn_data  # noqa: E402
import rides_data  # noqa: E402

from airflow_mlops.spec import ModelSpec, PipelineSpec, load_spec  # noqa: E402
from airflow_mlops.storage import LocalStorage  # noqa: E402

SMALL = churn_data.Scenario(days=16, customers=400, corrupt_day=3, covariate_shift_day=12, concept_shift_day=14)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/dev runs Airflow's own services: marked ``stack``, which scripts/test.sh runs
    beside the others (they mostly wait on the scheduler)."""
    for item in items:
        if DEV_TESTS in item.path.parents:
            item.add_marker(pytest.mark.stack)


@pytest.fixture(scope="session")
def spec() -> PipelineSpec:
    return load_spec(SPEC_PATH)


def spec_variant(tmp: Path, stem: str, **changes: object) -> Path:
    """The demo spec with some settings changed (a section's dict is merged, other values replace), written
    to ``tmp/<stem>.yaml`` (suites resolved to the repository's)."""
    import yaml

    raw = yaml.safe_load(SPEC_PATH.read_text())
    raw["features"]["raw_suite"] = str((SPEC_PATH.parent / raw["features"]["raw_suite"]).resolve())
    raw["training"]["training_suite"] = str((SPEC_PATH.parent / raw["training"]["training_suite"]).resolve())
    for key, value in changes.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) else value
    path = tmp / f"{stem}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="session")
def scenario_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Raw partitions of the small scenario; read-only for tests (copy before changing)."""
    root = tmp_path_factory.mktemp("lake")
    churn_data.write(SMALL, root)
    return root


@pytest.fixture(scope="session")
def labelled(spec: PipelineSpec) -> pd.DataFrame:
    """Eight days of the small scenario's snapshots joined with their labels: a training set."""
    frames = []
    for index in range(8):
        snap = churn_data.snapshot(SMALL, index)
        labels = churn_data.labels_arriving(SMALL, index + SMALL.label_delay_days)
        frames.append(snap.merge(labels, on=["customer_id", "event_timestamp"]))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="session")
def rides_spec() -> PipelineSpec:
    return load_spec(RIDES / "include" / "pipelines" / "rides.yaml")


@pytest.fixture(scope="session")
def rides_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve days of the rides example's stations and counts; read-only."""
    root = tmp_path_factory.mktemp("rides")
    rides_data.write(root, days=12)
    return root


@pytest.fixture(scope="session")
def rides_labelled(rides_lake: Path) -> pd.DataFrame:
    """The rides example's snapshots joined with the counts that arrived for them: a training set."""
    snapshots = pd.concat(pd.read_parquet(p) for p in sorted((rides_lake / "raw" / "stations").glob("*/*.parquet")))
    counts = pd.concat(pd.read_parquet(p) for p in sorted((rides_lake / "raw" / "station_rides").glob("*/*.parquet")))
    return snapshots.merge(counts, on=["station_id", "event_timestamp"]).reset_index(drop=True)


DEMAND_LEVELS = ["low", "medium", "high"]


@pytest.fixture(scope="session")
def demand_spec(rides_spec: PipelineSpec) -> PipelineSpec:
    """The rides example as a multiclass task: tomorrow's demand level of a station."""
    raw = rides_spec.model_dump(mode="json")
    raw["data"].update(task="multiclass", classes=DEMAND_LEVELS, label_column="demand_level")
    raw["training"].update(primary_metric="f1_macro", thresholds={"f1_macro": {"threshold": 0.5}})
    raw["monitoring"]["drift"]["min_performance"] = {"f1_macro": 0.4}
    return PipelineSpec.model_validate({**raw, "name": "demand", "source": rides_spec.source})


@pytest.fixture(scope="session")
def demand_labelled(rides_labelled: pd.DataFrame) -> pd.DataFrame:
    """The rides training set labelled with a demand level: the counts' terciles."""
    levels = pd.qcut(rides_labelled["rides_next_day"], 3, labels=DEMAND_LEVELS).astype(str)
    return rides_labelled.drop(columns="rides_next_day").assign(demand_level=levels)


def register_candidate(
    target: MlflowTarget,
    spec: PipelineSpec,
    labelled: pd.DataFrame,
    key: str,
    as_of: str = "2026-01-08",
    model_name: str | None = None,
    trainer: ModelSpec | None = None,
) -> Candidate:
    """Fit a quick model (``trainer``, by default a logistic regression) on ``labelled`` and log and
    register it under training key ``key``."""
    from airflow_mlops.steps import registry, training

    split = training.time_split(labelled, "event_timestamp", 2)
    model = training.fit(trainer or ModelSpec(trainer="sklearn_logistic_regression"), spec.data, split.train)
    metrics = training.evaluate(model, split.holdout, spec.data)
    return registry.log_and_register(
        target,
        experiment="churn",
        run_name=f"churn-{as_of}",
        model_name=model_name or spec.registered_model_name,
        model=model,
        data=spec.data,
        metrics=metrics,
        params={"trainer": "lr"},
        tags={"logical_date": as_of, "trigger": "test", "training_set": "x"},
        training_key=key,
        input_example=training.model_input(split.holdout, spec.data).head(3),
        artifacts={"validation/training_set.json": {"passed": True}},
    )


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "lake")


def prometheus_tool(name: str) -> str:
    """A binary of Debian's prometheus or prometheus-alertmanager package, unpacked by scripts/prometheus.sh."""
    path = ROOT / ".cache" / "prometheus" / "usr" / "bin" / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run scripts/prometheus.sh (scripts/test.sh does)")
    return str(path)


def day(index: int) -> date:
    return SMALL.start + timedelta(days=index)


# moto's S3 server on loopback, and a bucket per test reached through an Airflow AWS connection.
S3_PORT = 18290
ENDPOINT = f"http://127.0.0.1:{S3_PORT}"
CONN_ID = "mlops_test_s3"
KEYS = {"aws_access_key_id": "test-key", "aws_secret_access_key": "test-secret", "region_name": "us-east-1"}


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from airflow_mlops.dev.stack import Component, answers, supervised, wait_for

    moto = Component(
        "moto", (str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(S3_PORT))
    )
    with supervised([moto], {}, tmp_path_factory.mktemp("moto")) as running:
        wait_for(lambda: running.check() and answers(ENDPOINT), "moto's S3 server", timeout=60, interval=0.5)
        yield ENDPOINT


@pytest.fixture
def s3_client(s3_server: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest):
    import boto3

    connection = {
        "conn_type": "aws",
        "login": KEYS["aws_access_key_id"],
        "password": KEYS["aws_secret_access_key"],
        "extra": {"endpoint_url": s3_server, "region_name": KEYS["region_name"]},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(connection))
    client = boto3.client("s3", endpoint_url=s3_server, **KEYS)
    bucket = f"lake-{request.node.name.lower().replace('_', '-').replace('[', '-').replace(']', '')}"[:63]
    client.create_bucket(Bucket=bucket)
    yield client, bucket
    from airflow_mlops.dev.production import empty_bucket

    empty_bucket(client, bucket)


# Alert receivers on loopback: an SMTP server (aiosmtpd) and a webhook (Slack-compatible JSON), with the
# Airflow connections the spec's ``alerts`` name.
SMTP_PORT, WEBHOOK_PORT = 18131, 18132
ALERT_CONNECTIONS = {
    "AIRFLOW_CONN_ALERTS_SMTP": {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": SMTP_PORT,
        "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "mlops@example.com", "retry_limit": 0},
    },
    "AIRFLOW_CONN_ALERTS_WEBHOOK": {"conn_type": "http", "host": f"http://127.0.0.1:{WEBHOOK_PORT}"},
}
ALERTS = [
    {"channel": "smtp", "conn_id": "alerts_smtp", "to": ["ml-team@example.com"]},
    {"channel": "webhook", "conn_id": "alerts_webhook", "endpoint": "/hooks/mlops"},
]


class AlertSinks:
    """What the receivers got: emails (``email.message.Message``) and webhook posts (path, JSON body)."""

    def __init__(self) -> None:
        self.emails: list = []
        self.posts: list[tuple[str, dict]] = []
        self.webhook_status = 200

    def clear(self) -> None:
        self.emails.clear()
        self.posts.clear()

    def events(self) -> list[str]:
        return [body["event"] for _path, body in self.posts]

    def post(self, event: str) -> dict:
        [body] = [body for _path, body in self.posts if body["event"] == event]
        return body

    def email(self, subject_part: str):
        [message] = [m for m in self.emails if subject_part in m["Subject"]]
        return message


@pytest.fixture(scope="session")
def alert_sinks() -> Iterator[AlertSinks]:
    import email
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from aiosmtpd.controller import Controller

    sinks = AlertSinks()

    class Inbox:
        async def handle_DATA(self, server, session, envelope):
            sinks.emails.append(email.message_from_bytes(envelope.content))
            return "250 OK"

    class Webhook(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if sinks.webhook_status == 200:
                sinks.posts.append((self.path, body))
            self.send_response(sinks.webhook_status)
            self.end_headers()

        def log_message(self, *args):
            pass

    smtp = Controller(Inbox(), hostname="127.0.0.1", port=SMTP_PORT)
    smtp.start()
    http = ThreadingHTTPServer(("127.0.0.1", WEBHOOK_PORT), Webhook)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    saved = {key: os.environ.get(key) for key in ALERT_CONNECTIONS}
    os.environ.update({key: json.dumps(value) for key, value in ALERT_CONNECTIONS.items()})
    try:
        yield sinks
    finally:
        http.shutdown()
        smtp.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
