"""MLflow: where runs are tracked and models registered (a server, or a local store)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_mlops.hooks.base import ConnectionHook

if TYPE_CHECKING:
    from airflow_mlops.steps.registry import MlflowTarget


class MlflowHook(ConnectionHook):
    """Connection fields: ``tracking_uri`` (``http(s)://`` server, ``sqlite:///``, ...), or host and port of an
        MLflow server; optional ``registry_uri`` and ``artifact_location`` (root of new experiments' artifacts);
    login and password for a server behind authentication (MLflow's ``basic-auth`` app or a proxy).

        Older ``http``/``https`` connections naming the server by host and port keep working.
    """

    conn_name_attr = "mlflow_conn_id"
    default_conn_name = "mlflow_default"
    conn_type = "mlops_mlflow"
    hook_name = "MLflow (airflow-mlops)"
    accepted_types = ("generic", "http", "https")

    def __init__(self, mlflow_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(mlflow_conn_id, **kwargs)

    @property
    def tracking_uri(self) -> str:
        uri = self.extra.get("tracking_uri")
        if uri:
            return str(uri)
        connection = self.connection
        if not connection.host:
            raise ValueError(f"connection '{self.conn_id}' needs a tracking URI, or the host of an MLflow server")
        scheme = connection.schema or ("https" if connection.conn_type == "https" else "http")
        port = f":{connection.port}" if connection.port else ""
        return f"{scheme}://{connection.host}{port}"

    def get_conn(self) -> MlflowTarget:
        from airflow_mlops.steps.registry import MlflowTarget

        return MlflowTarget(
            tracking_uri=self.tracking_uri,
            registry_uri=self.extra.get("registry_uri") or None,
            artifact_location=self.extra.get("artifact_location") or None,
            username=self.connection.login or None,
            password=self.connection.password or None,
        )

    def check(self) -> str:
        target = self.get_conn()
        target.check_access()
        return f"MLflow at {target.tracking_uri} answers"
