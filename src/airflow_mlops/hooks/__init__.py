"""Hooks: the only place that turns Airflow connections into endpoints (the lake, MLflow, Feast).

Each hook has its own connection type, with form fields and a Test button in the Airflow UI
(declared in :mod:`airflow_mlops.provider_info`). Operators, the monitoring page and the CLI reach a
service only through these hooks.
"""

from airflow_mlops.hooks.feast import FeastHook
from airflow_mlops.hooks.lake import LakeHook
from airflow_mlops.hooks.mlflow import MlflowHook

__all__ = ["FeastHook", "LakeHook", "MlflowHook"]
