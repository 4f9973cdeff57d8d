"""Celery settings for Airflow's CeleryExecutor on this distribution: Airflow's defaults, plus workers
that import the ML libraries once before forking their pool (see :mod:`airflow_mlops.runtime.executor`).

Select with ``AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=airflow_mlops.runtime.celery_config.PRELOADING_CELERY_CONFIG``
next to ``AIRFLOW__CORE__EXECUTOR=CeleryExecutor``.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

from airflow_mlops.runtime.executor import PRELOAD

# Celery imports ``imports`` in a worker's main process, before it forks its pool (and the pool the tasks).
PRELOADING_CELERY_CONFIG: dict[str, Any] = {**DEFAULT_CELERY_CONFIG, "imports": PRELOAD}
