"""Airflow DAGs for every pipeline spec in include/pipelines: features, training, monitoring, rollback."""

from pathlib import Path

from airflow_mlops.factory import build_pipelines

globals().update(build_pipelines(Path(__file__).parents[1] / "include" / "pipelines"))
