"""The embedded stack: Airflow, MLflow and Feast on SQLite plus a local data lake, all under one folder.

Nothing here is a service: it is the environment (Airflow config and ``AIRFLOW_CONN_*`` connections)
that points the unchanged DAGs at local files. Production swaps these variables, not the DAGs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

API_PORT = 8080


def write_private(path: Path, content: str) -> None:
    """Create ``path`` readable and writable by its owner only, whatever the umask (secrets, passwords)."""
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
        file.write(content)


def airflow_env(home: Path, *, api_port: int, project: Path) -> dict[str, str]:
    """Airflow settings every stack shares: the DAGs and plugins folders of the ``project`` folder (the
    installed airflow-mlops package brings its own plugin and provider), auth, ports."""
    airflow_home = home / "airflow"
    airflow_home.mkdir(parents=True, exist_ok=True)
    secret_file = airflow_home / "jwt_secret"
    if not secret_file.exists():
        write_private(secret_file, os.urandom(24).hex())
    passwords = airflow_home / "passwords.json"
    if not passwords.exists():
        write_private(passwords, json.dumps({"admin": "admin"}))
    return {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(project.resolve() / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(project.resolve() / "plugins"),
        # clones of git DAG bundles: the stack's own (Airflow's default is shared by every stack on a machine)
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH": str(airflow_home / "dag_bundles"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": f"http://localhost:{api_port}",
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",  # the Test button of the connection forms
        # log servers next to the API port, so that two stacks (a demo and the tests) can share a machine
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(api_port + 1),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(api_port + 2),
        "AIRFLOW__API_AUTH__JWT_SECRET": secret_file.read_text(),
        "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "30",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "GX_ANALYTICS_ENABLED": "false",
        "MLOPS_HOME": str(home),
    }


def connection_env(connections: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Connections as ``AIRFLOW_CONN_<ID>`` JSON variables."""
    return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(definition) for conn_id, definition in connections.items()}


def feast_connection(
    registry_url: str, *, online_store: dict[str, Any], offline_store: dict[str, Any]
) -> dict[str, Any]:
    """The ``feast_default`` connection of a stack: project ``mlops``, a SQL registry at ``registry_url``."""
    return {
        "conn_type": "mlops_feast",
        "extra": {
            "project": "mlops",
            "registry": {"registry_type": "sql", "path": registry_url, "cache_ttl_seconds": 60},
            "online_store": online_store,
            "offline_store": offline_store,
        },
    }


def embedded_env(home: Path, *, project: Path, api_port: int = API_PORT) -> dict[str, str]:
    """Environment variables for the embedded stack rooted at ``home`` (created on first use)."""
    home = home.resolve()
    for sub in ("airflow", "data", "mlflow/artifacts", "feast"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    airflow_home = home / "airflow"
    tracking_uri = f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    connections: dict[str, dict[str, Any]] = {
        "mlops_storage": {"conn_type": "mlops_lake", "extra": {"root": str(home / "data")}},
        "mlflow_default": {
            "conn_type": "mlops_mlflow",
            "extra": {
                "tracking_uri": tracking_uri,
                "artifact_location": (home / "mlflow" / "artifacts").as_uri(),
            },
        },
        "feast_default": feast_connection(
            f"sqlite:///{home / 'feast' / 'registry.db'}",
            online_store={"type": "sqlite", "path": str(home / "feast" / "online.db")},
            offline_store={"type": "duckdb"},
        ),
    }
    return {
        **airflow_env(home, api_port=api_port, project=project),
        "AIRFLOW__CORE__EXECUTOR": "airflow_mlops.runtime.executor.PreloadingLocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": "airflow_mlops.runtime.sqlite.SQLITE_CONNECT_ARGS",
        "MLFLOW_TRACKING_URI": tracking_uri,  # for the mlflow CLI and UI
        **connection_env(connections),
    }


def git_bundle_env(repo_url: str, branch: str, *, refresh_s: int = 10) -> dict[str, str]:
    """Read the DAGs from a branch of a git repository (its ``dags/`` folder) instead of the project's
    folder: a ``GitDagBundle``, as a staging or production environment does (docs/level2.md), so every DAG
    run records the commit it runs as its bundle version. ``repo_url``: a path or a git URL."""
    bundle = {
        "name": "pipelines",
        "classpath": "airflow.providers.git.bundles.git.GitDagBundle",
        "kwargs": {"repo_url": repo_url, "tracking_ref": branch, "subdir": "dags", "refresh_interval": refresh_s},
    }
    return {"AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps([bundle])}
