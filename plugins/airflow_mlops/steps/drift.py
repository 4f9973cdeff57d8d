"""Data drift of the day's features against the champion's training data, decided and rendered by
Evidently's ``DataDriftPreset`` (its default method per column and type, its default thresholds).

The verdicts come from the report's own tests, so the HTML a user opens and the decision the
pipeline acts on can never disagree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from airflow_mlops.spec import DataSpec


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    method: str
    threshold: float
    score: float
    drifted: bool


@dataclass(frozen=True)
class DriftResult:
    columns: list[ColumnDrift]
    drift_share_threshold: float
    reference_rows: int
    current_rows: int

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    @property
    def share(self) -> float:
        return len(self.drifted_columns) / len(self.columns) if self.columns else 0.0

    @property
    def dataset_drift(self) -> bool:
        return self.share >= self.drift_share_threshold

    def summary(self) -> dict[str, Any]:
        return {
            "share": round(self.share, 4),
            "dataset_drift": self.dataset_drift,
            "drifted_columns": self.drifted_columns,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "drift_share_threshold": self.drift_share_threshold,
            "columns": [asdict(c) for c in self.columns],
        }


def run_report(reference: pd.DataFrame, current: pd.DataFrame, data: DataSpec, drift_share: float) -> Any:
    """The Evidently snapshot (report + tests) for the spec's feature columns."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=data.numerical, categorical_columns=data.categorical)
    columns = data.feature_names
    return Report([DataDriftPreset(columns=columns, drift_share=drift_share)], include_tests=True).run(
        current_data=Dataset.from_pandas(current[columns], data_definition=definition),
        reference_data=Dataset.from_pandas(reference[columns], data_definition=definition),
    )


def read_verdicts(snapshot: dict[str, Any], drift_share: float, reference_rows: int, current_rows: int) -> DriftResult:
    """Per-column score, method, threshold and verdict from a snapshot's ``dict()``."""
    scores = {
        m["config"]["column"]: (m["config"]["method"], float(m["config"]["threshold"]), float(m["value"]))
        for m in snapshot["metrics"]
        if m["config"]["type"].endswith(":ValueDrift")
    }
    failed = {
        t["metric_config"]["params"]["column"]
        for t in snapshot["tests"]
        if t["metric_config"]["params"]["type"].endswith(":ValueDrift") and t["status"] == "FAIL"
    }
    columns = [
        ColumnDrift(column, method, threshold, score, column in failed)
        for column, (method, threshold, score) in scores.items()
    ]
    return DriftResult(columns, drift_share, reference_rows, current_rows)


def detect_drift(
    reference: pd.DataFrame, current: pd.DataFrame, data: DataSpec, drift_share: float
) -> tuple[DriftResult, Any]:
    """Returns the decision and the snapshot it came from (for ``save_html``/``json``)."""
    snapshot = run_report(reference, current, data, drift_share)
    return read_verdicts(snapshot.dict(), drift_share, len(reference), len(current)), snapshot
