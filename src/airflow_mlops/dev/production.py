"""The production topology as local processes on loopback, for the production-topology test and
``scripts/production.sh``: what ``docker-compose.yaml`` runs as containers.

* Airflow on the CeleryExecutor: metadata DB on PostgreSQL, Redis as broker, Celery results in
  PostgreSQL, two workers (queue ``default``, and queue ``gpu`` for specs with ``training.queue: gpu``);
* MLflow server: backend store on PostgreSQL, artifacts on S3, served through its artifact proxy (the
  S3 keys live in the server's environment only);
* Feast: registry on PostgreSQL, online store on Redis, offline store reading the lake's partitions on S3;
* S3: moto's server, reached through the ``aws_default`` connection exactly as AWS would be.

PostgreSQL and Redis are shared servers: each run gets its own databases and Redis databases (named
after the run) and gives them back at the end. The DAGs and specs are the ones the embedded stack runs;
only the environment (:func:`production_env`) differs.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from airflow_mlops.dev.embedded import airflow_env, connection_env, feast_connection
from airflow_mlops.dev.stack import Component, Deployment, StackError, airflow_bin, answers, supervised, wait_for

# the shared servers; a superuser URL without a database (each run creates and drops its own)
POSTGRES = os.environ.get("MLOPS_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")
REDIS = os.environ.get("MLOPS_REDIS_URL", "redis://127.0.0.1:6379")
REGION = "us-east-1"
# moto accepts any keys; they travel like real ones (aws_default connection, MLflow server environment)
S3_KEYS = ("mlops-local", "mlops-local-secret")
DATABASES = ("airflow", "mlflow", "feast")
REDIS_CLAIM = "airflow-mlops:run"


@dataclass(frozen=True)
class Topology:
    """One run's resources on the shared servers and its ports (all derived from the API port)."""

    run: str
    home: Path
    api_port: int
    postgres: str
    redis_host: str
    redis_port: int
    broker_db: int
    online_db: int

    @property
    def s3_port(self) -> int:
        return self.api_port + 4

    @property
    def mlflow_port(self) -> int:
        return self.api_port + 5

    @property
    def bucket(self) -> str:
        return self.run.replace("_", "-")

    @property
    def s3_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def mlflow_uri(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def lake(self) -> str:
        return f"s3://{self.bucket}/lake"

    def database(self, role: str) -> str:
        return f"{self.run}_{role}"

    def sqlalchemy_url(self, role: str, scheme: str = "postgresql+psycopg2") -> str:
        return f"{scheme}://{self.postgres.split('://', 1)[1]}/{self.database(role)}"


def _postgres_admin(postgres: str) -> Any:
    import psycopg2

    connection = psycopg2.connect(f"{postgres}/postgres", connect_timeout=5)
    connection.autocommit = True  # CREATE/DROP DATABASE cannot run in a transaction
    return connection


def _redis(redis_url: str, db: int) -> Any:
    import redis

    return redis.Redis.from_url(f"{redis_url}/{db}", socket_timeout=5)


def _claim_redis_dbs(redis_url: str, run: str, count: int) -> list[int]:
    """Claim ``count`` empty Redis databases with an atomic marker key; the first empty ones win."""
    with _redis(redis_url, 0) as client:
        available = int(client.config_get("databases")["databases"])
    claimed: list[int] = []
    for db in range(1, available):  # 0 is everybody's default: never ours
        if len(claimed) == count:
            break
        with _redis(redis_url, db) as candidate:
            if candidate.dbsize() == 0 and candidate.set(REDIS_CLAIM, run, nx=True):
                if candidate.dbsize() == 1:
                    claimed.append(db)
                else:  # someone else wrote there meanwhile
                    candidate.delete(REDIS_CLAIM)
    if len(claimed) < count:
        _release_redis_dbs(redis_url, run, claimed)
        raise StackError(f"{redis_url} has no {count} empty databases to spare (of {available}); free some first")
    return claimed


def _release_redis_dbs(redis_url: str, run: str, dbs: list[int]) -> None:
    for db in dbs:
        with _redis(redis_url, db) as client:
            if client.get(REDIS_CLAIM) == run.encode():  # only ever flush a database this run claimed
                client.flushdb()


def provision(home: Path, api_port: int, postgres: str = POSTGRES, redis_url: str = REDIS) -> Topology:
    """Create this run's PostgreSQL databases and claim two Redis databases (broker, online store)."""
    redis = urlsplit(redis_url)
    if redis.scheme != "redis" or redis.path.strip("/") or redis.password:
        raise ValueError(f"Redis URL {redis_url!r}: expected redis://host:port (no database, no password)")
    run = f"mlops_{uuid.uuid4().hex[:10]}"
    created: list[str] = []
    admin = _postgres_admin(postgres)
    try:
        with admin.cursor() as cursor:
            for role in DATABASES:
                cursor.execute(f'CREATE DATABASE "{run}_{role}"')
                created.append(f"{run}_{role}")
        broker_db, online_db = _claim_redis_dbs(redis_url, run, 2)
    except BaseException:
        with admin.cursor() as cursor:
            for name in created:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        raise
    finally:
        admin.close()
    return Topology(
        run, home.resolve(), api_port, postgres, redis.hostname or "127.0.0.1", redis.port or 6379, broker_db, online_db
    )


def release(topology: Topology) -> None:
    """Drop the run's databases and flush the Redis databases it claimed."""
    admin = _postgres_admin(topology.postgres)
    try:
        with admin.cursor() as cursor:
            for role in DATABASES:
                cursor.execute(f'DROP DATABASE IF EXISTS "{topology.database(role)}" WITH (FORCE)')
    finally:
        admin.close()
    redis_url = f"redis://{topology.redis_host}:{topology.redis_port}"
    _release_redis_dbs(redis_url, topology.run, [topology.broker_db, topology.online_db])


def production_env(topology: Topology, project: Path) -> dict[str, str]:
    """Airflow's configuration and the ``mlops_storage``, ``aws_default``, ``mlflow_default`` and
    ``feast_default`` connections for this topology; DAGs and specs are ``project``'s, unchanged."""
    redis = f"{topology.redis_host}:{topology.redis_port}"
    connections: dict[str, dict[str, Any]] = {
        "mlops_storage": {"conn_type": "mlops_lake", "extra": {"root": topology.lake, "aws_conn_id": "aws_default"}},
        "aws_default": {
            "conn_type": "aws",
            "login": S3_KEYS[0],
            "password": S3_KEYS[1],
            "extra": {"endpoint_url": topology.s3_endpoint, "region_name": REGION},
        },
        "mlflow_default": {"conn_type": "mlops_mlflow", "host": "127.0.0.1", "port": topology.mlflow_port},
        "feast_default": feast_connection(
            topology.sqlalchemy_url("feast"),
            online_store={"type": "redis", "connection_string": f"{redis},db={topology.online_db}"},
            offline_store={
                "type": "airflow_mlops.feature_store.lake_offline_store.LakeOfflineStore",
                "aws_conn_id": "aws_default",
            },
        ),
    }
    return {
        **airflow_env(topology.home, api_port=topology.api_port, project=project),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": topology.sqlalchemy_url("airflow"),
        "AIRFLOW__CELERY__BROKER_URL": f"redis://{redis}/{topology.broker_db}",
        "AIRFLOW__CELERY__RESULT_BACKEND": topology.sqlalchemy_url("airflow", scheme="db+postgresql"),
        "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "airflow_mlops.runtime.celery_config.PRELOADING_CELERY_CONFIG",
        "MLFLOW_TRACKING_URI": topology.mlflow_uri,  # for the mlflow CLI
        **connection_env(connections),
    }


def services(topology: Topology) -> list[Component]:
    """The S3 endpoint and the MLflow server; the S3 keys are in MLflow's environment only."""
    bin_dir = Path(sys.executable).parent
    return [
        Component("s3", (str(bin_dir / "moto_server"), "-H", "127.0.0.1", "-p", str(topology.s3_port))),
        Component(
            "mlflow-server",
            (
                str(bin_dir / "mlflow"),
                "server",
                "--backend-store-uri",
                topology.sqlalchemy_url("mlflow"),
                "--artifacts-destination",
                f"s3://{topology.bucket}/mlflow",
                "--serve-artifacts",
                "--host",
                "127.0.0.1",
                "--port",
                str(topology.mlflow_port),
                "--workers",
                "1",
            ),
            env={
                "MLFLOW_S3_ENDPOINT_URL": topology.s3_endpoint,
                "AWS_ACCESS_KEY_ID": S3_KEYS[0],
                "AWS_SECRET_ACCESS_KEY": S3_KEYS[1],
                "AWS_DEFAULT_REGION": REGION,
            },
        ),
    ]


def celery_worker(
    name: str, queues: str, concurrency: int, log_port: int, env: Mapping[str, str] | None = None
) -> Component:
    """A Celery worker named ``<name>@<host>`` serving ``queues`` (comma-separated) with ``concurrency`` slots,
    its log ``celery-worker-<name>``; workers on one machine each need a log server port of their own."""
    return Component(
        f"celery-worker-{name}",
        (airflow_bin(), "celery", "worker", "--queues", queues, "--concurrency", str(concurrency),
         "--celery-hostname", f"{name}@%h"),
        env={"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(log_port), **(env or {})},
    )  # fmt: skip


def celery_workers(topology: Topology) -> list[Component]:
    """Two workers on one machine: queue ``default`` and queue ``gpu``, each with its own log server port."""
    return [
        celery_worker("default", "default", 2, topology.api_port + 1),
        celery_worker("gpu", "gpu", 1, topology.api_port + 3),
    ]


def s3_client(topology: Topology) -> Any:
    """A boto3 client of the topology's S3 endpoint, for provisioning and for checking what the runs wrote."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=topology.s3_endpoint,
        region_name=REGION,
        aws_access_key_id=S3_KEYS[0],
        aws_secret_access_key=S3_KEYS[1],
    )


def empty_bucket(client: Any, bucket: str) -> None:
    """Delete every object of ``bucket`` and the bucket itself."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    client.delete_bucket(Bucket=bucket)


@contextmanager
def local_production(
    home: Path, api_port: int, project: Path, postgres: str = POSTGRES, redis_url: str = REDIS
) -> Iterator[tuple[Topology, Deployment]]:
    """Provision the run's databases, start S3 and MLflow, create the bucket; yield what Airflow needs
    (its environment, Celery workers, and MLflow's health URL: :func:`airflow_mlops.dev.stack.running_stack`
    waits for it while Airflow migrates and starts, as MLflow migrates its own database). Everything is
    stopped, emptied and dropped on the way out, also after a failure."""
    topology = provision(home, api_port, postgres, redis_url)
    with ExitStack() as cleanup:
        cleanup.callback(release, topology)
        running = cleanup.enter_context(supervised(services(topology), {}, topology.home / "logs"))
        wait_for(lambda: running.check() and answers(topology.s3_endpoint), "the S3 endpoint", timeout=60, interval=1)
        client = s3_client(topology)
        client.create_bucket(Bucket=topology.bucket)
        cleanup.callback(empty_bucket, client, topology.bucket)  # runs before the services stop
        yield (
            topology,
            Deployment(
                production_env(topology, project),
                tuple(celery_workers(topology)),
                needs=(f"{topology.mlflow_uri}/health",),
            ),
        )


def describe(topology: Topology) -> str:
    """Where each part of the topology lives, for people and logs."""
    return json.dumps(
        {
            "airflow": f"http://localhost:{topology.api_port} (admin/admin), metadata DB "
            f"{topology.database('airflow')}, broker redis db {topology.broker_db}",
            "mlflow": f"{topology.mlflow_uri} (backend {topology.database('mlflow')}, "
            f"artifacts s3://{topology.bucket}/mlflow)",
            "feast": f"registry {topology.database('feast')}, online store redis db {topology.online_db}",
            "s3": f"{topology.s3_endpoint} bucket {topology.bucket}, lake {topology.lake}",
        },
        indent=2,
    )
