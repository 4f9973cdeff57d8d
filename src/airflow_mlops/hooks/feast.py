"""Feast: the feature registry and the online store (the offline store reads the data lake)."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import yaml

from airflow_mlops.hooks.base import ConnectionHook

if TYPE_CHECKING:
    from airflow_mlops.steps.features import FeastTarget

STORE_FIELDS = ("registry", "online_store", "offline_store")
# Offline store classes that moved, by their old path (a connection names its class by path).
MOVED = {
    "airflow_mlops.lake_offline_store.LakeOfflineStore": (
        "airflow_mlops.feature_store.lake_offline_store.LakeOfflineStore"
    ),
}


class FeastHook(ConnectionHook):
    """Connection fields: ``project`` and the Feast ``RepoConfig`` parts ``registry``, ``online_store`` and
    ``offline_store``, each written as in ``feature_store.yaml`` (a path or type name, or a YAML/JSON
    mapping such as ``{type: redis, connection_string: "redis:6379"}``). Other extra keys are passed on."""

    conn_name_attr = "feast_conn_id"
    default_conn_name = "feast_default"
    conn_type = "mlops_feast"
    hook_name = "Feast (airflow-mlops)"

    def __init__(self, feast_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(feast_conn_id, **kwargs)

    def repo_config(self) -> dict[str, Any]:
        """The connection as a Feast ``RepoConfig`` dict (form fields parsed the way feature_store.yaml is)."""
        config = {key: value for key, value in self.extra.items() if value not in (None, "")}
        for field in ("project", "registry", "online_store"):
            self.required(field)
        for field in STORE_FIELDS:
            if isinstance(config.get(field), str):
                try:
                    config[field] = yaml.safe_load(config[field])
                except yaml.YAMLError as exc:
                    raise ValueError(f"connection '{self.conn_id}' field '{field}' is not valid YAML: {exc}") from exc
        offline = config.get("offline_store")
        if isinstance(offline, dict) and offline.get("type") in MOVED:
            warnings.warn(
                f"connection '{self.conn_id}': offline_store type {offline['type']} is now {MOVED[offline['type']]}",
                DeprecationWarning,
                stacklevel=2,
            )
            config["offline_store"] = {**offline, "type": MOVED[offline["type"]]}
        return config

    def get_conn(self) -> FeastTarget:
        from airflow_mlops.steps.features import FeastTarget

        return FeastTarget(self.repo_config())

    def check(self) -> str:
        return self.get_conn().check_access()
