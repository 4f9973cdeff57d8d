"""What Airflow learns about this package through the ``apache_airflow_provider`` entry point, the way
it learns about every provider: connection types with their form fields (declared here, so the UI
needs no hook import to draw the form), hooks, operators, sensors, extra links and the notifier.

Airflow reads this in every process, so it imports nothing.
"""

from __future__ import annotations

from typing import Any

PACKAGE = "airflow-mlops"
STRING = {"type": ["string", "null"]}


def _field(label: str, description: str, **schema: Any) -> dict[str, Any]:
    return {"label": label, "description": description, "schema": {**STRING, **schema}}


CONNECTION_TYPES: list[dict[str, Any]] = [
    {
        "connection-type": "mlops_lake",
        "hook-class-name": "airflow_mlops.hooks.lake.LakeHook",
        "hook-name": "Data lake (airflow-mlops)",
        "conn-fields": {
            "root": _field(
                "Lake root",
                "Where raw data lands and every pipeline output goes: a local folder, file:///path or s3://bucket/prefix",
            ),
            "aws_conn_id": _field(
                "AWS connection",
                "For an s3:// root: the AWS connection with the keys, region and endpoint_url",
                default="aws_default",
            ),
        },
        "ui-field-behaviour": {
            "hidden-fields": ["host", "schema", "login", "password", "port"],
            "relabeling": {},
            "placeholders": {"root": "s3://my-bucket/lake"},
        },
    },
    {
        "connection-type": "mlops_mlflow",
        "hook-class-name": "airflow_mlops.hooks.mlflow.MlflowHook",
        "hook-name": "MLflow (airflow-mlops)",
        "conn-fields": {
            "tracking_uri": _field(
                "Tracking URI",
                "http(s)://host:port of an MLflow server, or a local store such as sqlite:///path/mlflow.db; "
                "leave empty to use Host and Port",
            ),
            "registry_uri": _field("Registry URI", "Only when the model registry is elsewhere than tracking"),
            "artifact_location": _field(
                "Artifact location", "Root for new experiments' artifacts (e.g. s3://bucket/mlflow); server default"
            ),
        },
        "ui-field-behaviour": {
            "hidden-fields": ["login", "password"],
            "relabeling": {"host": "MLflow server host", "schema": "Scheme (http or https)"},
            "placeholders": {"host": "mlflow", "port": "5000", "schema": "http"},
        },
    },
    {
        "connection-type": "mlops_feast",
        "hook-class-name": "airflow_mlops.hooks.feast.FeastHook",
        "hook-name": "Feast (airflow-mlops)",
        "conn-fields": {
            "project": _field("Project", "The Feast project the pipelines register their feature views in"),
            "registry": _field(
                "Registry",
                "As in feature_store.yaml: a path, or a mapping such as "
                "{registry_type: sql, path: 'postgresql+psycopg2://user@host/feast'}",
            ),
            "online_store": _field(
                "Online store",
                "As in feature_store.yaml: {type: sqlite, path: /data/online.db} or "
                "{type: redis, connection_string: 'redis:6379,db=1'}",
            ),
            "offline_store": _field(
                "Offline store",
                "As in feature_store.yaml; {type: duckdb} for a local lake, "
                "{type: airflow_mlops.feature_store.lake_offline_store.LakeOfflineStore} for S3",
            ),
        },
        "ui-field-behaviour": {
            "hidden-fields": ["host", "schema", "login", "password", "port"],
            "relabeling": {},
            "placeholders": {"project": "mlops", "offline_store": "{type: duckdb}"},
        },
    },
]

MODULES = {
    "hooks": ["airflow_mlops.hooks.lake", "airflow_mlops.hooks.mlflow", "airflow_mlops.hooks.feast"],
    "operators": [
        "airflow_mlops.operators.validation",
        "airflow_mlops.operators.features",
        "airflow_mlops.operators.training",
        "airflow_mlops.operators.monitoring",
    ],
    "sensors": ["airflow_mlops.sensors.partition"],
}

EXTRA_LINKS = [
    f"airflow_mlops.links.{name}"
    for name in (
        "MlflowRunLink",
        "ModelVersionLink",
        "ChampionVersionLink",
        "DriftReportLink",
        "PerformanceReportLink",
        "ValidationResultLink",
        "FeatureViewLink",
    )
]


def get_provider_info() -> dict[str, Any]:
    integration = "MLOps (airflow-mlops)"
    return {
        "package-name": PACKAGE,
        "name": "MLOps level 1",
        "description": "Continuous training, validation gates (Great Expectations), features (Feast), "
        "registry and promotion (MLflow) and drift monitoring (Evidently) as DAG factories and operators.",
        "integrations": [{"integration-name": integration, "tags": ["software"]}],
        **{kind: [{"integration-name": integration, "python-modules": modules}] for kind, modules in MODULES.items()},
        "connection-types": CONNECTION_TYPES,
        "extra-links": EXTRA_LINKS,
        "notifications": ["airflow_mlops.notifications.PipelineNotifier"],
    }
