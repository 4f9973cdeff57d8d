"""Cluster policy of the production image: tasks that lean on a shared service take a slot of its pool.

A backfill of many days, or many pipelines at once, would otherwise send every worker slot to the
MLflow server or the Feast stores together. Pools bound that without touching DAG files or specs:
Airflow applies ``task_policy`` to every task when the DAG processor parses it. Airflow imports this
module from ``$AIRFLOW_HOME/config`` (the Dockerfile copies it there); airflow-init in
docker-compose.yaml creates the pools, sized from ``.env``. The embedded stack does not load it.
"""

from __future__ import annotations

from typing import Any

MLFLOW_POOL = "mlflow"
FEAST_POOL = "feast"
DEFAULT_POOL = "default_pool"

# By operator class name, so that Airflow's start-up imports nothing of the project from here.
# train_model is left out on purpose: it holds its slot for the whole fit, and its worker's
# concurrency (or the gpu queue) already bounds it.
POOL_OF_OPERATOR = {
    "PublishFeaturesOperator": FEAST_POOL,  # writes the day into the Redis online store
    "BuildTrainingSetOperator": FEAST_POOL,  # point-in-time join through the SQL registry
    "ChallengerGateOperator": MLFLOW_POOL,  # downloads the champion through the MLflow server
    "InfraValidationOperator": MLFLOW_POOL,  # downloads the candidate and scores it
    "PromoteModelOperator": MLFLOW_POOL,  # moves the champion alias
    "ScoreBatchOperator": MLFLOW_POOL,  # downloads the champion for the day's batch
}


def task_policy(task: Any) -> None:
    """Route a task to its service's pool, unless its DAG already chose a pool of its own."""
    pool = POOL_OF_OPERATOR.get(task.task_type)
    if pool is not None and task.pool == DEFAULT_POOL:
        task.pool = pool
