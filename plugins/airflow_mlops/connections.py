"""Endpoints come from Airflow connections, so DAG files and specs never change between stacks.

* ``mlops_storage``: the data lake root, ``extra.root``: a local path, a ``file://`` URI, or
  ``s3://bucket/prefix`` with ``extra.aws_conn_id`` (default ``aws_default``) naming the AWS connection
  whose keys, region and ``endpoint_url`` reach the bucket.
* ``mlflow_default``: ``extra.tracking_uri`` (and optional ``registry_uri``, ``artifact_location``),
  or an ``http(s)`` connection to an MLflow server built from host and port.
* ``feast_default``: ``extra`` is a Feast ``RepoConfig`` (project, registry, online_store, offline_store).

Each can be defined as ``AIRFLOW_CONN_<ID>`` JSON in the environment, in the UI, or in a secrets backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_mlops.storage import Storage

STORAGE_CONN_ID = "mlops_storage"
MLFLOW_CONN_ID = "mlflow_default"
FEAST_CONN_ID = "feast_default"


def _extra(conn_id: str) -> tuple[Any, dict[str, Any]]:
    from airflow.sdk import BaseHook

    connection = BaseHook.get_connection(conn_id)
    return connection, connection.extra_dejson


def storage_root(conn_id: str = STORAGE_CONN_ID) -> str:
    return _root(conn_id, _extra(conn_id)[1])


def _root(conn_id: str, extra: dict[str, Any]) -> str:
    if "root" not in extra:
        raise ValueError(f"connection '{conn_id}' needs extra.root (the data lake root path or URI)")
    return str(extra["root"])


def open_lake(conn_id: str = STORAGE_CONN_ID) -> Storage:
    """The data lake of the ``mlops_storage`` connection, local or on S3."""
    from airflow_mlops.storage import AWS_CONN_ID, open_storage

    _, extra = _extra(conn_id)
    return open_storage(_root(conn_id, extra), str(extra.get("aws_conn_id") or AWS_CONN_ID))


def mlflow_settings(conn_id: str = MLFLOW_CONN_ID) -> dict[str, str | None]:
    connection, extra = _extra(conn_id)
    tracking_uri = extra.get("tracking_uri")
    if not tracking_uri:
        if not connection.host:
            raise ValueError(f"connection '{conn_id}' needs extra.tracking_uri or a host")
        scheme = connection.schema or ("https" if connection.conn_type == "https" else "http")
        port = f":{connection.port}" if connection.port else ""
        tracking_uri = f"{scheme}://{connection.host}{port}"
    return {
        "tracking_uri": tracking_uri,
        "registry_uri": extra.get("registry_uri"),
        "artifact_location": extra.get("artifact_location"),
    }


def feast_settings(conn_id: str = FEAST_CONN_ID) -> dict[str, Any]:
    _, extra = _extra(conn_id)
    missing = {"project", "registry", "online_store"} - set(extra)
    if missing:
        raise ValueError(f"connection '{conn_id}' extra lacks Feast settings {sorted(missing)}")
    return dict(extra)
