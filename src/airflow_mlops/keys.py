"""Every storage key the pipelines read or write, in one place: where a day's raw data lands, where it is
quarantined or published, where predictions, training sets, validation results and reports go.

Keys are ``/``-separated paths relative to the data lake root (see :mod:`airflow_mlops.storage`); daily
folders are hive-style ``date=YYYY-MM-DD`` partitions, so Feast, DuckDB and people read them alike.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from airflow_mlops.spec import PipelineSpec

ReportName = Literal["drift.html", "drift.json", "performance.json", "performance.html", "decision.json", "shadow.json"]
DRIFT_REPORT: ReportName = "drift.html"
PERFORMANCE_REPORT: ReportName = "performance.html"
DECISION: ReportName = "decision.json"
SHADOW: ReportName = "shadow.json"  # champion and challenger on the same arrived labels, and the verdict


def partition(prefix: str, ds: date | str) -> str:
    """Key of the daily partition folder for ``ds`` under ``prefix``."""
    day = ds.isoformat() if isinstance(ds, date) else ds
    return f"{prefix.rstrip('/')}/date={day}"


def partition_day(key: str) -> str:
    """The ``YYYY-MM-DD`` of the daily partition a key lies in (the inverse of :func:`partition`)."""
    return key.split("date=")[1].split("/")[0]


def raw_partition(spec: PipelineSpec, ds: date | str) -> str:
    """Where producers land a day's raw rows (one or more parquet files)."""
    return partition(spec.data.raw_path, ds)


def completion_marker(spec: PipelineSpec, ds: date | str) -> str | None:
    """The file that says a raw day has fully landed, when the spec asks producers for one."""
    marker = spec.data.completion_marker
    return f"{raw_partition(spec, ds)}/{marker}" if marker else None


def labels_partition(spec: PipelineSpec, ds: date | str) -> str:
    """Where the labels that arrived on a day land."""
    return partition(spec.data.labels_path, ds)


def offline_prefix(spec: PipelineSpec) -> str:
    """Where validated partitions live: the Feast offline source of the feature view."""
    return f"offline/{spec.name}/{spec.features.feature_view}"


def offline_partition(spec: PipelineSpec, ds: date | str) -> str:
    return partition(offline_prefix(spec), ds)


def quarantine_prefix(spec: PipelineSpec) -> str:
    return f"quarantine/{spec.name}/{spec.features.feature_view}"


def quarantine_partition(spec: PipelineSpec, ds: date | str) -> str:
    """Where the validation gate moves a raw partition it blocked."""
    return partition(quarantine_prefix(spec), ds)


def training_set(spec: PipelineSpec, as_of: date | str, fingerprint: str) -> str:
    return f"{training_set_folder(spec, as_of, fingerprint)}/training_set.parquet"


def training_set_folder(spec: PipelineSpec, as_of: date | str, fingerprint: str) -> str:
    """One training set, addressed by its day and content: a re-run on changed data writes a new one, so
    the set an older model version's ``training_set`` tag points to is never overwritten."""
    day = as_of.isoformat() if isinstance(as_of, date) else as_of
    return f"training_sets/{spec.name}/as_of={day}/data={fingerprint}"


def validation_prefix(spec: PipelineSpec) -> str:
    """The folder of every GX validation result of a pipeline (served by the monitoring page)."""
    return f"validation/{spec.name}"


def validation_results(spec: PipelineSpec, stage: str) -> str:
    """The folder of one stage's GX results (``raw`` or ``training``)."""
    return f"{validation_prefix(spec)}/{stage}"


def validation_result(spec: PipelineSpec, stage: str, validated: str) -> str:
    """The GX result of validating the file or folder ``validated`` at ``stage``."""
    return f"{validation_results(spec, stage)}/{validated.replace('/', '__')}.json"


def predictions(spec: PipelineSpec, ds: date | str) -> str:
    return f"{partition(spec.monitoring.predictions_path, ds)}/predictions.parquet"


def shadow_predictions_path(spec: PipelineSpec) -> str:
    """The challenger's scores, beside the champion's: a table of its own, so readers of the predictions
    never mix the two."""
    return f"{spec.monitoring.predictions_path.rstrip('/')}_shadow"


def shadow_predictions(spec: PipelineSpec, ds: date | str) -> str:
    return f"{partition(shadow_predictions_path(spec), ds)}/predictions.parquet"


def reports_prefix(spec: PipelineSpec) -> str:
    return spec.monitoring.reports_path.strip("/")


def report(spec: PipelineSpec, ds: date | str, name: ReportName) -> str:
    """One of a monitored day's reports: the Evidently drift and performance reports, the metrics, the
    retraining decision."""
    return f"{partition(reports_prefix(spec), ds)}/{name}"


def reference_profile(spec: PipelineSpec, version: str) -> str:
    """The drift reference profile of one champion version, built once from its training set."""
    return f"{reports_prefix(spec)}/reference/version={version}"


def audit_prefix(spec: PipelineSpec) -> str:
    """The audit trail of a pipeline's ``@champion``: one JSON file per alias move, never rewritten by another."""
    return f"audit/{spec.name}"


def alias_move(spec: PipelineSpec, event_id: str) -> str:
    return f"{audit_prefix(spec)}/{event_id}.json"
