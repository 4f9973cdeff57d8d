"""The level-1 scenario on the production topology as local processes: Airflow's CeleryExecutor with a Redis
broker and two workers (queue ``default`` and ``gpu``), metadata DB, MLflow backend and Feast registry on
PostgreSQL, Feast online store on Redis, the data lake and MLflow artifacts on S3 (moto's server).

The DAG files are the repository's; the spec is a copy that only adds ``training.queue: gpu``. Results are
checked where they live: dag runs in PostgreSQL, online features in Redis, objects in S3, versions in MLflow.
"""

from __future__ import annotations

import io
import re
import shutil
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from airflow_mlops.dev.demo import Plan, environment, play
from airflow_mlops.dev.production import POSTGRES, REDIS, local_production, s3_client
from airflow_mlops.keys import offline_prefix, partition, quarantine_prefix
from tests.conftest import ROOT

pytestmark = pytest.mark.e2e

API_PORT = 18200  # and the next five: log servers, S3, MLflow


def _require_servers() -> None:
    import psycopg2
    import redis

    try:
        psycopg2.connect(f"{POSTGRES}/postgres", connect_timeout=3).close()
    except psycopg2.OperationalError as exc:
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES}: {exc}")
    try:
        redis.Redis.from_url(REDIS, socket_timeout=3).ping()
    except redis.ConnectionError as exc:
        pytest.skip(f"Redis is not reachable at {REDIS}: {exc}")


def _project_with_gpu_training(root: Path) -> Path:
    """The repository's DAGs and specs, with the churn spec's training routed to the ``gpu`` queue."""
    shutil.copytree(ROOT / "dags", root / "dags")
    shutil.copytree(ROOT / "include", root / "include")
    (root / "plugins").symlink_to(ROOT / "plugins")
    spec = root / "include" / "pipelines" / "churn.yaml"
    text = spec.read_text()
    assert "\ntraining:\n" in text and "queue:" not in text
    spec.write_text(text.replace("\ntraining:\n", "\ntraining:\n  queue: gpu\n"))
    return root


def test_level_one_scenario_on_the_production_topology(tmp_path):
    _require_servers()
    import psycopg2
    import redis
    from mlflow import MlflowClient

    from airflow_mlops.hooks import FeastHook, LakeHook, MlflowHook
    from airflow_mlops.spec import load_spec
    from airflow_mlops.steps import features

    project = _project_with_gpu_training(tmp_path / "project")
    spec_path = project / "include" / "pipelines" / "churn.yaml"
    spec = load_spec(spec_path)
    plan = Plan(days=16, customers=400, first_training_day=10, corrupt_day=4)
    home = tmp_path / "stack"
    corrupt = spec.start_date + timedelta(days=plan.corrupt_day)
    with local_production(home, API_PORT, project=project) as (topology, deployment):
        rows = play(deployment, home, plan, project, timeout=1200)

        # PostgreSQL: the Airflow metadata DB of this run
        with psycopg2.connect(f"{POSTGRES}/{topology.database('airflow')}") as db, db.cursor() as cursor:
            cursor.execute("select dag_id, run_id, run_type, state, logical_date from dag_run")
            runs = cursor.fetchall()
            cursor.execute("select queue, state, hostname from task_instance where task_id = 'train_model'")
            training_tasks = cursor.fetchall()
        features_runs = [r for r in runs if r[0] == "churn_features"]
        assert len(features_runs) == plan.days and {r[2] for r in features_runs} == {"backfill"}  # CLI backfills
        # the quarantined day, by its logical date (a data-interval run is named after when it would fire)
        assert [r[4].date() for r in features_runs if r[3] == "failed"] == [corrupt]
        monitoring = [r for r in runs if r[0] == "churn_monitoring"]
        assert len(monitoring) == plan.days - plan.first_training_day - 1
        assert all(r[3] == "success" for r in monitoring), monitoring
        training = [r for r in runs if r[0] == "churn_training"]
        drift_runs = [r for r in training if r[1].startswith("drift__")]
        assert drift_runs and all(r[3] == "success" for r in training), training
        assert len(training_tasks) == len(training) and {(q, s) for q, s, _ in training_tasks} == {("gpu", "success")}
        gpu_log = (home / "logs" / "celery-worker-gpu.log").read_text()
        default_log = (home / "logs" / "celery-worker-default.log").read_text()
        assert gpu_log.count("task_id='train_model'") >= len(training) and "task_id='train_model'" not in default_log
        assert "task_id='publish_features'" in default_log

        # the scenario as the driver read it back from S3 and MLflow
        assert rows[0].champion == "1" and rows[0].drift_share is not None
        triggered = [d for d in rows if d.retrain]
        assert [f"drift__{d.ds}" for d in triggered] == sorted(r[1] for r in drift_runs)
        assert all(d.trained and d.trained[0].decision in ("promoted", "rejected") for d in triggered)

        # S3: the lake and MLflow's artifacts, through boto3
        s3 = s3_client(topology)
        keys = [
            item["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=topology.bucket)
            for item in page.get("Contents", [])
        ]
        lake = [k.removeprefix("lake/") for k in keys if k.startswith("lake/")]
        offline = sorted(k for k in lake if k.startswith(offline_prefix(spec)))
        assert len(offline) == plan.days - 1 and all(k.endswith("/part.parquet") for k in offline)
        quarantined = partition(quarantine_prefix(spec), corrupt)
        [moved] = [k for k in lake if k.startswith("quarantine/")]
        assert re.fullmatch(rf"{quarantined}/at=\d{{8}}T\d{{12}}Z/customers\.parquet", moved), moved
        assert len([k for k in lake if k.endswith("/drift.html")]) == len(monitoring)
        assert len([k for k in lake if k.startswith("predictions/")]) == len(monitoring)
        models = [k for k in keys if k.startswith("mlflow/") and k.endswith("/MLmodel")]

        # MLflow: versions, aliases, and artifacts served from the bucket through the server's proxy
        client = MlflowClient(topology.mlflow_uri)
        versions = client.search_model_versions(f"name = '{spec.registered_model_name}'")
        assert len(versions) == len(training) == len(models)
        champion = client.get_model_version_by_alias(spec.registered_model_name, "champion")
        promoted = [v for v in versions if v.tags.get("decision") == "promoted"]
        assert champion.version == max(promoted, key=lambda v: int(v.version)).version
        assert all(v.tags["training_set"].startswith(f"{topology.lake}/training_sets/") for v in versions)
        assert all(client.get_run(v.run_id).info.artifact_uri.startswith("mlflow-artifacts:/") for v in versions)

        # Redis: the newest validated features are online, one hash per customer, under the run's project
        newest = offline[-1]
        newest_frame = pd.read_parquet(
            io.BytesIO(s3.get_object(Bucket=topology.bucket, Key=f"lake/{newest}")["Body"].read())
        )
        online_db = redis.Redis(host=topology.redis_host, port=topology.redis_port, db=topology.online_db)
        feast_keys = [k for k in online_db.scan_iter(count=1000) if k.endswith(b"mlops")]
        assert len(feast_keys) == newest_frame[spec.data.entity_key].nunique()
        sample = newest_frame.sort_values(spec.data.entity_key).head(5)
        with environment(deployment.env):
            store = FeastHook().get_conn().store()
            online = features.online_features(store, spec, sample[spec.data.entity_key].tolist())
            # the connections' Test buttons, against the real servers: S3, the MLflow server, Postgres + Redis
            tested = {hook.conn_type: hook.test_connection() for hook in (LakeHook(), MlflowHook(), FeastHook())}
        assert tested == {
            "mlops_lake": (True, f"data lake at {topology.lake} is listable (1 object(s) seen)"),
            "mlops_mlflow": (True, f"MLflow at {topology.mlflow_uri} answers"),
            "mlops_feast": (True, "Feast project 'mlops': registry read (1 feature view(s)), redis online store open"),
        }
        pd.testing.assert_frame_equal(
            online[spec.data.feature_names].reset_index(drop=True),
            sample[spec.data.feature_names].reset_index(drop=True),
            check_dtype=False,
        )

    # everything this run created is gone
    with psycopg2.connect(f"{POSTGRES}/postgres") as db, db.cursor() as cursor:
        cursor.execute("select datname from pg_database where datname like %s", (f"{topology.run}%",))
        assert cursor.fetchall() == []
    for db_number in (topology.broker_db, topology.online_db):
        assert redis.Redis(host=topology.redis_host, port=topology.redis_port, db=db_number).dbsize() == 0
