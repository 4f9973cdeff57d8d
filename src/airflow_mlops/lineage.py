"""OpenLineage for the pipelines' tasks, through Airflow's own integration
(apache-airflow-providers-openlineage): each operator records what it read and wrote as it runs, and the
provider's listener asks for it with ``get_openlineage_facets_on_complete`` / ``_on_failure`` and sends
the events to the transport ``[openlineage]`` configures. Nothing is sent, and nothing here is imported
from OpenLineage, until a transport is configured.

Datasets are named as OpenLineage's naming spec says: lake files by their location (namespace ``file`` or
``s3://<bucket>``), model versions in the MLflow registry they live in, feature views in their Feast
project. A GX gate's outcome rides on the dataset it checked as a ``dataQualityAssertions`` facet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from airflow_mlops.steps.registry import MlflowTarget
    from airflow_mlops.steps.validation import ValidationReport


@dataclass(frozen=True)
class Dataset:
    namespace: str
    name: str
    rows: int | None = None  # outputs: OpenLineage's outputStatistics
    checked: ValidationReport | None = None  # inputs: the GX report of this dataset


@dataclass
class TaskLineage:
    """What one task read and wrote."""

    inputs: list[Dataset] = field(default_factory=list)
    outputs: list[Dataset] = field(default_factory=list)


def lake_dataset(location: str, *, rows: int | None = None, checked: ValidationReport | None = None) -> Dataset:
    """A file or folder of the data lake, by its location (a local path or an object store URI)."""
    parts = urlsplit(location)
    if parts.scheme and parts.netloc:
        return Dataset(f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/"), rows, checked)
    return Dataset("file", parts.path if parts.scheme == "file" else location, rows, checked)


def model_dataset(target: MlflowTarget, model: str, version: str) -> Dataset:
    """A model version, in the namespace of the MLflow registry that holds it."""
    registry = target.registry_uri or target.tracking_uri
    parts = urlsplit(registry)
    namespace = f"{parts.scheme}://{parts.netloc}" if parts.netloc else registry
    return Dataset(namespace, f"models/{model}/{version}")


def feature_view_dataset(project: str, view: str) -> Dataset:
    """A Feast feature view (its online store), in its Feast project."""
    return Dataset(f"feast://{project}", view)


def operator_lineage(lineage: TaskLineage | None) -> Any:
    """The provider's ``OperatorLineage`` for what a task recorded (empty when it recorded nothing)."""
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.event_v2 import InputDataset, OutputDataset
    from openlineage.client.facet_v2 import data_quality_assertions_dataset as dq
    from openlineage.client.facet_v2 import output_statistics_output_dataset as stats

    if lineage is None:
        return OperatorLineage()

    def assertions(report: ValidationReport) -> dict[str, Any]:
        checked = [
            dq.Assertion(assertion=o.expectation, success=o.success, column=o.column, severity=o.severity)
            for o in report.outcomes
        ]
        return {"dataQualityAssertions": dq.DataQualityAssertionsDatasetFacet(assertions=checked)}

    return OperatorLineage(
        inputs=[
            InputDataset(d.namespace, d.name, inputFacets=assertions(d.checked) if d.checked else {})
            for d in lineage.inputs
        ],
        outputs=[
            OutputDataset(
                d.namespace,
                d.name,
                outputFacets={"outputStatistics": stats.OutputStatisticsOutputDatasetFacet(rowCount=d.rows)}
                if d.rows is not None
                else {},
            )
            for d in lineage.outputs
        ],
    )
