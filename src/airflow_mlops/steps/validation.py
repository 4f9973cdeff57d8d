"""Data validation gate: the spec's schema contract, then a Great Expectations suite.

Each expectation carries ``meta.severity``: ``block`` (default) stops the data, ``warn`` only reports.
The schema check runs first so that a missing, renamed or retyped column gets one plain message
instead of a cascade of failed expectations.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from airflow_mlops import keys
from airflow_mlops.contracts import ValidationRecord
from airflow_mlops.spec import Column, PipelineSpec
from airflow_mlops.storage import DataError, Storage, read_partition

_DTYPE_KINDS = {"int64": "iu", "float64": "fiu", "string": "OSU"}


@dataclass(frozen=True)
class Outcome:
    expectation: str
    column: str | None
    severity: str
    success: bool
    detail: str = ""

    def describe(self) -> str:
        where = f" on column '{self.column}'" if self.column else ""
        return f"{self.expectation}{where}" + (f" ({self.detail})" if self.detail else "")


@dataclass
class ValidationReport:
    suite: str
    source: str
    rows: int
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def blocking(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success and o.severity == "block"]

    @property
    def warnings(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success and o.severity != "block"]

    @property
    def passed(self) -> bool:
        return not self.blocking

    def summary(self) -> dict[str, Any]:
        """Small enough for an XCom: counts and the failed expectations, never the data."""
        return {
            "suite": self.suite,
            "source": self.source,
            "rows": self.rows,
            "passed": self.passed,
            "evaluated": len(self.outcomes),
            "blocking_failures": [o.describe() for o in self.blocking],
            "warnings": [o.describe() for o in self.warnings],
        }

    def to_json(self) -> bytes:
        return json.dumps({**self.summary(), "outcomes": [asdict(o) for o in self.outcomes]}, indent=2).encode()


class ValidationFailed(DataError):
    def __init__(self, report: ValidationReport):
        self.report = report
        failures = "; ".join(o.describe() for o in report.blocking)
        super().__init__(f"{report.source} failed suite '{report.suite}' ({len(report.blocking)} blocking): {failures}")


def check_schema(frame: pd.DataFrame, columns: list[Column], source: str) -> list[Outcome]:
    """The spec's columns must all be there with a compatible dtype."""
    outcomes = []
    for column in columns:
        if column.name not in frame.columns:
            outcomes.append(
                Outcome("schema: column present", column.name, "block", False, f"missing; found {list(frame.columns)}")
            )
            continue
        kind = frame[column.name].dtype.kind
        ok = kind in _DTYPE_KINDS[column.dtype]
        detail = "" if ok else f"dtype {frame[column.name].dtype}, spec says {column.dtype}"
        outcomes.append(Outcome("schema: dtype", column.name, "block", ok, detail))
    if frame.empty:
        outcomes.append(Outcome("schema: not empty", None, "block", False, f"{source} has no rows"))
    return outcomes


def load_suite(path: Path) -> dict[str, Any]:
    try:
        suite = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot load expectation suite {path}: {exc}") from exc
    if not isinstance(suite, dict) or "expectations" not in suite:
        raise DataError(f"expectation suite {path} has no 'expectations' list")
    for i, expectation in enumerate(suite["expectations"]):
        severity = expectation.get("meta", {}).get("severity", "block")
        if severity not in ("block", "warn"):
            raise DataError(f"{path}: expectations[{i}].meta.severity is {severity!r}; allowed: block, warn")
    return suite


def run_suite(frame: pd.DataFrame, suite: dict[str, Any], source: Path) -> list[Outcome]:
    """Validate ``frame`` with GX 1.x on an ephemeral context (nothing is written by GX itself)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    expectations = []
    for i, raw in enumerate(suite["expectations"]):
        try:  # GX's own loader drops a bad expectation with a log line; a gate must not shrink silently
            expectations.append(ExpectationConfiguration(**{k: v for k, v in raw.items() if k != "id"}).to_domain_obj())
        except Exception as exc:
            raise DataError(f"{source}: expectations[{i}] ({raw.get('type')}) is invalid: {exc}") from exc
    batch = (
        context.data_sources.add_pandas("airflow_mlops")
        .add_dataframe_asset("frame")
        .add_batch_definition_whole_dataframe("whole")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    result = batch.validate(
        gx.ExpectationSuite(name=suite.get("name", source.stem), expectations=expectations), result_format="SUMMARY"
    )
    outcomes = []
    for item in result.results:
        config = item.expectation_config
        assert config is not None, "GX returned a result without its expectation configuration"
        outcomes.append(
            Outcome(
                expectation=config.type,
                column=config.kwargs.get("column"),
                severity=(config.meta or {}).get("severity", "block"),
                success=bool(item.success),
                detail="" if item.success else _detail(item.result or {}, item.exception_info or {}),
            )
        )
    return outcomes


def _raised(exception_info: dict[str, Any]) -> str | None:
    """GX reports errors flat, or keyed by metric configuration: the first message either way."""
    if "raised_exception" in exception_info:
        infos = [exception_info]
    else:
        infos = [v for v in exception_info.values() if isinstance(v, dict)]
    messages = [str(i.get("exception_message") or "error") for i in infos if i.get("raised_exception")]
    return messages[0].splitlines()[0][:200] if messages else None


def _detail(result: dict[str, Any], exception_info: dict[str, Any]) -> str:
    raised = _raised(exception_info)
    if raised:
        return f"error: {raised}"
    if result.get("unexpected_percent") is not None:
        return f"{result['unexpected_percent']:.1f}% unexpected"
    if "observed_value" in result:
        return f"observed {result['observed_value']!r}"[:200]
    return ""


def validate_frame(frame: pd.DataFrame, suite_path: Path, columns: list[Column], source: str) -> ValidationReport:
    """Schema contract plus GX suite; the report says whether the data may go on."""
    suite = load_suite(suite_path)
    report = ValidationReport(suite=suite.get("name", suite_path.stem), source=source, rows=len(frame))
    report.outcomes = check_schema(frame, columns, source)
    if report.passed:
        report.outcomes += run_suite(frame, suite, suite_path)
    return report


def validate_stored(
    storage: Storage, spec: PipelineSpec, stage: str, folder: str
) -> tuple[ValidationReport, ValidationRecord]:
    """Validate the partition folder ``folder`` for ``stage`` (``raw`` or ``training``) against the spec's
    suite; the full result is kept in the lake, whether the data passed or not."""
    suite = spec.features.raw_suite if stage == "raw" else spec.training.training_suite
    report = validate_frame(read_partition(storage, folder), suite, spec.data.features, source=storage.location(folder))
    result_key = keys.validation_result(spec, stage, folder)
    storage.write_bytes(result_key, report.to_json())
    record: ValidationRecord = {
        **report.summary(),  # type: ignore[typeddict-item]
        "result": storage.location(result_key),
        "result_key": result_key,
    }
    return report, record


def quarantine(storage: Storage, spec: PipelineSpec, ds: str) -> str:
    """Move a blocked day's raw partition aside, so nothing downstream reads it; returns where it went."""
    target = keys.quarantine_partition(spec, ds)
    storage.move(keys.raw_partition(spec, ds), target)
    return target
