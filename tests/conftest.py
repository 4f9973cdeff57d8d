"""Shared fixtures: the demo spec, small generated data in a throwaway data lake, and local MLflow/Feast."""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path

import pytest

from airflow_mlops.embedded import embedded_env

ROOT = Path(__file__).resolve().parents[1]
SPEC_PATH = ROOT / "include" / "pipelines" / "churn.yaml"
sys.path.insert(0, str(ROOT / "include" / "demo"))
# Airflow reads its configuration on first import: point it at a throwaway embedded stack first.
STACK_HOME = Path(tempfile.mkdtemp(prefix="airflow-mlops-tests-"))
os.environ.update(embedded_env(STACK_HOME, api_port=18080))
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
