"""Airflow plugin of airflow-mlops: the "Model monitoring" page in the UI's navigation, served by the
API server under /mlops behind Airflow's authentication (see ``airflow_mlops.ui``).

Plugins load in every Airflow process (DAG processor and task runs included), so this module stays
light: the FastAPI app and everything it needs are imported on the first request, in the API server.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from airflow_mlops.links import UI_PREFIX


class MonitoringApp:
    """ASGI entry point that imports the monitoring app when the API server first routes a request to it."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        from airflow_mlops.ui.app import app

        await app(scope, receive, send)


class MlopsPlugin(AirflowPlugin):
    name = "airflow_mlops"
    fastapi_apps = [{"app": MonitoringApp(), "url_prefix": UI_PREFIX, "name": "Model monitoring"}]
    external_views = [
        {
            "name": "Model monitoring",
            "href": f"{UI_PREFIX}/",
            "url_route": "mlops",
            "destination": "nav",
            "category": "browse",
        }
    ]
