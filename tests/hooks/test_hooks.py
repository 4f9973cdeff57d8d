"""Each hook's connection type against the real local services (a folder, moto's S3, MLflow's SQLite store,
Redis, Feast's SQL registry), and a clear failure against a closed port: what the UI's Test button shows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_mlops.hooks import FeastHook, LakeHook, MlflowHook
from tests.conftest import CONN_ID

CLOSED = "127.0.0.1:9"  # the discard port: nothing listens there


@pytest.fixture
def connection(monkeypatch: pytest.MonkeyPatch):
    """Define a connection the way deployments do: ``AIRFLOW_CONN_<ID>`` JSON."""

    def define(conn_id: str, **definition: Any) -> str:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(definition))
        return conn_id

    return define


def test_lake_hook_reaches_a_local_folder_or_says_what_is_missing(connection, tmp_path: Path) -> None:
    (tmp_path / "lake").mkdir()
    ok, message = LakeHook(
        connection("lake_ok", conn_type="mlops_lake", extra={"root": str(tmp_path / "lake")})
    ).test_connection()
    assert ok and str(tmp_path / "lake") in message
    ok, message = LakeHook(
        connection("lake_gone", conn_type="mlops_lake", extra={"root": str(tmp_path / "gone")})
    ).test_connection()
    assert not ok and f"{tmp_path / 'gone'} is not a folder" in message
    ok, message = LakeHook(connection("lake_empty", conn_type="mlops_lake", extra={})).test_connection()
    assert not ok and "needs the field 'root'" in message


def test_lake_hook_lists_an_s3_bucket_through_its_aws_connection(connection, s3_client) -> None:
    _, bucket = s3_client
    conn_id = connection(
        "lake_s3", conn_type="mlops_lake", extra={"root": f"s3://{bucket}/lake", "aws_conn_id": CONN_ID}
    )
    ok, message = LakeHook(conn_id).test_connection()
    assert ok and f"s3://{bucket}/lake is listable" in message
    closed = connection(
        "aws_closed",
        conn_type="aws",
        login="k",
        password="s",
        extra={"endpoint_url": f"http://{CLOSED}", "region_name": "us-east-1"},
    )
    unreachable = connection(
        "lake_closed", conn_type="mlops_lake", extra={"root": f"s3://{bucket}/lake", "aws_conn_id": closed}
    )
    ok, message = LakeHook(unreachable).test_connection()
    assert not ok and CLOSED in message


def test_mlflow_hook_reaches_the_tracking_store_or_names_the_server(connection, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ok, message = MlflowHook(
        connection("mlflow_ok", conn_type="mlops_mlflow", extra={"tracking_uri": store})
    ).test_connection()
    assert ok and store in message
    host, port = CLOSED.split(":")
    ok, message = MlflowHook(
        connection("mlflow_closed", conn_type="mlops_mlflow", host=host, port=int(port))
    ).test_connection()
    assert not ok and f"MLflow server http://{CLOSED} does not answer" in message


def feast_fields(tmp_path: Path, online_store: str) -> dict[str, str]:
    """The connection form's fields: strings, written as in feature_store.yaml."""
    return {
        "project": "hooks",
        "registry": f"{{registry_type: sql, path: 'sqlite:///{tmp_path / 'registry.db'}'}}",
        "online_store": online_store,
        "offline_store": "{type: duckdb}",
    }


@pytest.mark.parametrize("online", ["sqlite", "redis"])
def test_feast_hook_reads_the_registry_and_opens_the_online_store(connection, tmp_path: Path, online: str) -> None:
    stores = {
        "sqlite": f"{{type: sqlite, path: '{tmp_path / 'online.db'}'}}",
        "redis": "{type: redis, connection_string: '127.0.0.1:6379,db=0'}",
    }
    conn_id = connection(f"feast_{online}", conn_type="mlops_feast", extra=feast_fields(tmp_path, stores[online]))
    ok, message = FeastHook(conn_id).test_connection()
    assert ok, message
    assert message == f"Feast project 'hooks': registry read (0 feature view(s)), {online} online store open"


def test_feast_hook_names_an_unreachable_online_store_and_a_bad_field(connection, tmp_path: Path) -> None:
    closed = f"{{type: redis, connection_string: '{CLOSED}'}}"
    ok, message = FeastHook(
        connection("feast_closed", conn_type="mlops_feast", extra=feast_fields(tmp_path, closed))
    ).test_connection()
    assert not ok and "ConnectionError" in message
    broken = {**feast_fields(tmp_path, "sqlite"), "registry": "{registry_type: sql"}
    ok, message = FeastHook(connection("feast_broken", conn_type="mlops_feast", extra=broken)).test_connection()
    assert not ok and "field 'registry' is not valid YAML" in message


def test_older_generic_json_connections_keep_working(connection, tmp_path: Path) -> None:
    """Connections written before the connection types existed: ``generic`` with the same extra keys."""
    lake = LakeHook(connection("old_lake", conn_type="generic", extra={"root": str(tmp_path)}))
    assert lake.get_conn().uri == tmp_path.as_uri()
    mlflow = MlflowHook(connection("old_mlflow", conn_type="http", host="mlflow", port=5000))
    assert mlflow.get_conn().tracking_uri == "http://mlflow:5000"
    feast = FeastHook(
        connection(
            "old_feast",
            conn_type="generic",
            extra={"project": "p", "registry": {"path": "r.db"}, "online_store": {"type": "sqlite", "path": "o.db"}},
        )
    )
    assert feast.repo_config() == {
        "project": "p",
        "registry": {"path": "r.db"},
        "online_store": {"type": "sqlite", "path": "o.db"},
    }


def test_the_lake_offline_store_under_its_old_path_still_resolves(connection, tmp_path: Path) -> None:
    old = "airflow_mlops.lake_offline_store.LakeOfflineStore"
    fields = {**feast_fields(tmp_path, "sqlite"), "offline_store": {"type": old, "aws_conn_id": "aws_default"}}
    with pytest.warns(DeprecationWarning, match="is now airflow_mlops.feature_store.lake_offline_store"):
        config = FeastHook(connection("feast_moved", conn_type="mlops_feast", extra=fields)).repo_config()
    assert config["offline_store"] == {
        "type": "airflow_mlops.feature_store.lake_offline_store.LakeOfflineStore",
        "aws_conn_id": "aws_default",
    }


def test_a_sqlite_online_store_not_yet_written_needs_its_folder(connection, tmp_path: Path) -> None:
    """Feast creates the SQLite file on its first write: the Test passes when the folder is there."""
    fresh = f"{{type: sqlite, path: '{tmp_path / 'fresh.db'}'}}"
    ok, _ = FeastHook(
        connection("feast_fresh", conn_type="mlops_feast", extra=feast_fields(tmp_path, fresh))
    ).test_connection()
    assert ok and not (tmp_path / "fresh.db").exists()  # testing created nothing
    nowhere = f"{{type: sqlite, path: '{tmp_path / 'missing' / 'online.db'}'}}"
    ok, message = FeastHook(
        connection("feast_nowhere", conn_type="mlops_feast", extra=feast_fields(tmp_path, nowhere))
    ).test_connection()
    assert not ok and f"folder {tmp_path / 'missing'} is missing or not writable" in message


def test_a_connection_of_another_type_says_how_to_convert_it(connection) -> None:
    conn_id = connection("lake_pg", conn_type="postgres", host="db")
    with pytest.raises(
        ValueError, match=r"connection 'lake_pg' has type 'postgres'.*type 'mlops_lake'.*\"conn_type\": \"mlops_lake\""
    ):
        LakeHook(conn_id).get_conn()
