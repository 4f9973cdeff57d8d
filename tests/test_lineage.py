"""OpenLineage datasets and facets from what a task recorded (the events themselves, sent by the provider's
listener through the real scheduler, are checked in tests/dev/test_e2e.py)."""

from __future__ import annotations

from openlineage.client.serde import Serde

from airflow_mlops.lineage import (
    Dataset,
    TaskLineage,
    feature_view_dataset,
    lake_dataset,
    model_dataset,
    operator_lineage,
)
from airflow_mlops.operators.features import PublishFeaturesOperator
from airflow_mlops.steps.registry import MlflowTarget
from airflow_mlops.steps.validation import Outcome, ValidationReport
from tests.conftest import SPEC_PATH


def named(dataset: Dataset) -> tuple[str, str]:
    return dataset.namespace, dataset.name


def test_datasets_are_named_by_location_as_openlineage_names_them() -> None:
    assert named(lake_dataset("/srv/lake/raw/customers/date=2026-01-05")) == (
        "file",
        "/srv/lake/raw/customers/date=2026-01-05",
    )
    assert named(lake_dataset("file:///srv/lake/x.parquet")) == ("file", "/srv/lake/x.parquet")
    assert named(lake_dataset("s3://mlops/lake/offline/churn/date=2026-01-05")) == (
        "s3://mlops",
        "lake/offline/churn/date=2026-01-05",
    )
    assert named(model_dataset(MlflowTarget("http://mlflow:5000"), "churn_model", "3")) == (
        "http://mlflow:5000",
        "models/churn_model/3",
    )
    local = MlflowTarget("sqlite:////srv/mlflow/mlflow.db")
    assert named(model_dataset(local, "churn_model", "1")) == (
        "sqlite:////srv/mlflow/mlflow.db",
        "models/churn_model/1",
    )
    assert named(feature_view_dataset("mlops", "customer_features")) == ("feast://mlops", "customer_features")


def test_a_gate_s_outcomes_ride_on_the_checked_input_and_row_counts_on_outputs() -> None:
    report = ValidationReport(
        suite="churn_raw",
        source="s3://mlops/lake/raw/customers/date=2026-01-05",
        rows=400,
        outcomes=[
            Outcome("expect_column_values_to_not_be_null", "monthly_charges", "block", False, "12% null"),
            Outcome("expect_table_row_count_to_be_between", None, "warn", True),
        ],
    )
    lineage = TaskLineage(
        inputs=[lake_dataset(report.source, checked=report)],
        outputs=[lake_dataset("s3://mlops/lake/offline/churn/date=2026-01-05", rows=400)],
    )
    event = operator_lineage(lineage)
    (checked,) = event.inputs
    assert (checked.namespace, checked.name) == ("s3://mlops", "lake/raw/customers/date=2026-01-05")
    facet = Serde.to_dict(checked.inputFacets["dataQualityAssertions"])
    assert [(a["assertion"], a.get("column"), a["success"], a["severity"]) for a in facet["assertions"]] == [
        ("expect_column_values_to_not_be_null", "monthly_charges", False, "block"),
        ("expect_table_row_count_to_be_between", None, True, "warn"),
    ]
    (written,) = event.outputs
    assert written.outputFacets["outputStatistics"].rowCount == 400


def test_an_operator_that_recorded_nothing_reports_empty_lineage() -> None:
    operator = PublishFeaturesOperator(task_id="publish_features", spec_path=str(SPEC_PATH))
    for lineage in (
        operator.get_openlineage_facets_on_complete(None),
        operator.get_openlineage_facets_on_failure(None),
    ):
        assert (lineage.inputs, lineage.outputs) == ([], [])
