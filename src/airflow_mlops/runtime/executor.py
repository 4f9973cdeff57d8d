"""Task processes that start with the ML libraries already imported, on either executor.

Airflow forks every task process: from a LocalExecutor worker (itself forked from the scheduler), or
from a Celery worker's pool process. Importing pandas, scikit-learn, MLflow, GX, Feast and Evidently
once, before those forks, saves each task 5-15 s of imports on a small machine. DAG parsing is
unaffected: the DAG processor is a different process. Opt in with
``AIRFLOW__CORE__EXECUTOR=airflow_mlops.runtime.executor.PreloadingLocalExecutor``, or for Celery workers with
``AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=airflow_mlops.runtime.celery_config.PRELOADING_CELERY_CONFIG``.
"""

from __future__ import annotations

import importlib
import time

from airflow.executors.local_executor import LocalExecutor

PRELOAD = (
    "pandas",
    "pyarrow.parquet",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "sklearn.metrics",
    "mlflow",
    "mlflow.sklearn",
    "mlflow.pyfunc",
    "great_expectations",
    "feast",
    # What a first materialisation imports lazily (DuckDB through ibis, and the MLflow data source
    # Feast's DuckDB reader checks for): about 1.5 s per task otherwise.
    "airflow_mlops.feature_store.lake_offline_store",
    "airflow_mlops.feature_store.online_writer",
    "airflow_mlops.feature_store.sqlite_writer",
    "airflow_mlops.feature_store.redis_writer",
    "ibis.backends.duckdb",
    "feast.infra.data_sources.mlflow",
    "evidently",
    "evidently.presets",
)


class PreloadingLocalExecutor(LocalExecutor):
    def start(self) -> None:
        started = time.monotonic()
        for module in PRELOAD:
            importlib.import_module(module)
        self.log.info("preloaded %d ML libraries in %.1fs", len(PRELOAD), time.monotonic() - started)
        super().start()
