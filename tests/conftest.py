"""Shared fixtures: the demo spec, small generated data in a throwaway data lake, and local MLflow/Feast."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from airflow_mlops.dev.embedded import embedded_env

ROOT = Path(__file__).resolve().parents[1]
SPEC_PATH = ROOT / "include" / "pipelines" / "churn.yaml"
sys.path.insert(0, str(ROOT / "include" / "demo"))
# Airflow reads its configuration on first import: point it at a throwaway embedded stack first.
STACK_HOME = Path(tempfile.mkdtemp(prefix="airflow-mlops-tests-"))
os.environ.update(embedded_env(STACK_HOME, project=ROOT, api_port=18080))
os.environ.update(GX_ANALYTICS_ENABLED="false", MLFLOW_DISABLE_TELEMETRY="true")

import churn_data  # noqa: E402

from airflow_mlops.spec import PipelineSpec, load_spec  # noqa: E402
from airflow_mlops.storage import LocalStorage  # noqa: E402

SMALL = churn_data.Scenario(days=16, customers=400, corrupt_day=3, covariate_shift_day=12, concept_shift_day=14)


@pytest.fixture(scope="session")
def spec() -> PipelineSpec:
    return load_spec(SPEC_PATH)


@pytest.fixture(scope="session")
def scenario_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Raw partitions of the small scenario; read-only for tests (copy before changing)."""
    root = tmp_path_factory.mktemp("lake")
    churn_data.write(SMALL, root)
    return root


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "lake")


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
