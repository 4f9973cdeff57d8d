"""Real services behind fault-injecting proxies: an MLflow server (SQLite backend, local artifacts) and
moto's S3 server, each reached only through a proxy the test tells when and how to fail."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_mlops.steps.registry import MlflowTarget
from tests.faults.proxy import HttpFaults


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from airflow_mlops.dev.stack import Component, answers, supervised, wait_for

    home, port = tmp_path_factory.mktemp("mlflow-server"), free_port()
    server = Component(
        "mlflow",
        (
            str(Path(sys.executable).with_name("mlflow")),
            "server",
            "--backend-store-uri",
            f"sqlite:///{home / 'mlflow.db'}",
            "--artifacts-destination",
            (home / "artifacts").as_uri(),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ),
        env={"MLFLOW_DISABLE_TELEMETRY": "true"},
    )
    with supervised([server], {}, home / "logs") as running:
        url = f"127.0.0.1:{port}"
        wait_for(lambda: running.check() and answers(f"http://{url}/health"), "the MLflow server", timeout=120)
        yield url


@pytest.fixture
def mlflow_faults(mlflow_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[HttpFaults]:
    """The MLflow server behind a fault proxy; MLflow's own HTTP retries off, so each fault is seen once."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    faults = HttpFaults(mlflow_server).start()
    yield faults
    faults.stop()


@pytest.fixture
def model_name(request: pytest.FixtureRequest) -> str:
    """A registered model per test (the session's MLflow server is shared)."""
    import hashlib

    return f"model_{hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:12]}"


@pytest.fixture
def through_proxy(mlflow_faults: HttpFaults) -> MlflowTarget:
    return MlflowTarget(mlflow_faults.url)
