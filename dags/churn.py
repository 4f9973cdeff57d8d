"""Airflow DAGs for the churn pipeline: features, training and monitoring, built from its spec."""

from pathlib import Path

from airflow_mlops.factory import build_pipelines

globals().update(build_pipelines(Path(__file__).parents[1] / "include" / "pipelines" / "churn.yaml"))
