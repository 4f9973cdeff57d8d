"""Operator extra links: from a task in the Airflow UI to what it produced.

Airflow evaluates ``get_link`` in the worker when the task finishes (failed tasks included) and stores
the URL. Every link here only formats the XCom record the task pushed (see :mod:`airflow_mlops.contracts`):
a run id, a version, a storage key, and where MLflow's UI is. It calls no service and reads no connection;
a task that recorded nothing gets no link.

Reports, validation results, feature views and (when MLflow has no UI server, as on the embedded
stack) runs and versions open in this distribution's own pages, served by the Airflow API server under
:data:`UI_PREFIX` behind Airflow's authentication.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, urlencode

from airflow.sdk import BaseOperatorLink, conf

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

UI_PREFIX = "/mlops"


def ui_url(path: str, **query: str) -> str:
    """Absolute URL of one of the plugin's pages, on the API server the UI is served from."""
    base = conf.get("api", "base_url", fallback="http://localhost:8080").rstrip("/")
    return f"{base}{UI_PREFIX}{path}" + (f"?{urlencode(query)}" if query else "")


def version_anchor(pipeline: str, version: str) -> str:
    """The id of a model version's row on the pipeline page, which links point at."""
    return f"{pipeline}-v{version}"


def model_version_url(mlflow_ui: str | None, pipeline: str, model: str, version: str) -> str:
    if mlflow_ui:
        return f"{mlflow_ui}/#/models/{quote(model, safe='')}/versions/{quote(version, safe='')}"
    return ui_url(f"/pipelines/{quote(pipeline, safe='')}") + "#" + quote(version_anchor(pipeline, version), safe="")


class RecordedLink(BaseOperatorLink):
    """A link built from an XCom the task pushed (``return_value`` unless told otherwise); none when the
    task did not record ``recorded_field`` there."""

    name: ClassVar[str]
    recorded_key: ClassVar[str] = "return_value"
    recorded_field: ClassVar[str]

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        record = XCom.get_value(ti_key=ti_key, key=self.recorded_key)
        if not isinstance(record, dict) or not record.get(self.recorded_field):
            return ""
        return self.url(record)

    def url(self, record: dict[str, Any]) -> str:
        raise NotImplementedError


class MlflowRunLink(RecordedLink):
    """The MLflow run that logged the candidate (params, metrics, artifacts, lineage tags)."""

    name = "MLflow run"
    recorded_field = "run_id"

    def url(self, record: dict[str, Any]) -> str:
        run_id = quote(str(record["run_id"]), safe="")
        if record.get("mlflow_ui"):
            return f"{record['mlflow_ui']}/#/experiments/{quote(str(record['experiment_id']), safe='')}/runs/{run_id}"
        return ui_url(f"/runs/{run_id}")


class ModelVersionLink(RecordedLink):
    """The registered model version the task registered."""

    name = "Model version"
    recorded_field = "version"

    def url(self, record: dict[str, Any]) -> str:
        version = str(record[self.recorded_field])
        return model_version_url(record.get("mlflow_ui"), str(record["pipeline"]), str(record["model"]), version)


class ChampionVersionLink(ModelVersionLink):
    """The version the task made champion."""

    name = "Champion version"
    recorded_field = "champion"


class LakeFileLink(RecordedLink):
    """A file the task wrote to the data lake, served by the plugin under ``route``."""

    route: ClassVar[str] = ""

    def url(self, record: dict[str, Any]) -> str:
        return ui_url(f"{self.route}/{quote(str(record[self.recorded_field]), safe='/=')}")


class DriftReportLink(LakeFileLink):
    """The Evidently HTML drift report, opened from the data lake by the plugin."""

    name = "Drift report"
    recorded_field = "report_key"
    route = "/reports"


class PerformanceReportLink(LakeFileLink):
    """Evidently's classification or regression report of the champion on the labels that have arrived."""

    name = "Performance report"
    recorded_field = "report_key"
    route = "/reports"


class ValidationResultLink(LakeFileLink):
    """The GX validation result; recorded before the gate decides, so a blocked day links too."""

    name = "Validation result"
    recorded_key = "validation"
    recorded_field = "result_key"
    route = "/validation"


class FeatureViewLink(RecordedLink):
    """The Feast feature view the task materialised, with the window it wrote online."""

    name = "Feature view"
    recorded_field = "feature_view"

    def url(self, record: dict[str, Any]) -> str:
        pipeline, view = quote(str(record["pipeline"]), safe=""), quote(str(record[self.recorded_field]), safe="")
        return ui_url(
            f"/pipelines/{pipeline}/feature-views/{view}",
            start=str(record.get("start", "")),
            end=str(record.get("end", "")),
        )
