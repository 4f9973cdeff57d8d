"""Data validation gate: the spec's schema contract, then a Great Expectations suite.

Each expectation carries ``meta.severity``: ``block`` (default) stops the data, ``warn`` only reports.
The schema check runs first so that a missing, renamed or retyped column gets one plain message
instead of a cascade of failed expectations.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from airflow_mlops import keys, task_types
from airflow_mlops.contracts import ValidationRecord
from airflow_mlops.spec import DataSpec, PipelineSpec
from airflow_mlops.storage import DataError, Storage, read_partition

_DTYPE_KINDS = {  # numpy dtype kinds each declared dtype accepts (a category column's kind is 'O')
    "int64": "iu",
    "int32": "iu",
    "float64": "fiu",
    "float32": "fiu",
    "bool": "b",
    "string": "OSU",
    "category": "OSU",
}
_RANGES = {  # what a 32-bit column can hold
    "int32": (float(np.iinfo(np.int32).min), float(np.iinfo(np.int32).max)),
    "float32": (float(np.finfo(np.float32).min), float(np.finfo(np.float32).max)),
}


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


def missing_column(frame: pd.DataFrame, name: str) -> Outcome:
    return Outcome("schema: column present", name, "block", False, f"missing; found {list(frame.columns)}")


def check_schema(frame: pd.DataFrame, data: DataSpec, source: str) -> list[Outcome]:
    """The spec's columns must all be there with a compatible dtype: the entity key its declared type, the
    timestamp a timestamp, each feature its declared dtype (a narrower one is fine, a 32-bit column's
    values must fit 32 bits). Integer features hold no nulls (declare a float when values may be missing);
    booleans may."""
    key_kinds = _DTYPE_KINDS[data.entity_key_dtype]
    expected = [(data.entity_key, f"entity key ({data.entity_key_dtype})", key_kinds)]
    expected += [
        (data.timestamp_column, "timestamp", "M"),
        *((c.name, c.dtype, _DTYPE_KINDS[c.dtype]) for c in data.features),
    ]
    outcomes = []
    for name, wanted, kinds in expected:
        if name not in frame.columns:
            outcomes.append(missing_column(frame, name))
            continue
        column = frame[name]
        ok = column.dtype.kind in kinds
        detail = "" if ok else f"dtype {column.dtype}, spec says {wanted}"
        if not ok and "i" in kinds and column.dtype.kind == "f" and column.isna().any():
            whole = column.dropna()
            if (whole == whole.round()).all():  # pandas turns an int column with nulls into float64
                detail = (
                    f"an integer column with {int(column.isna().sum())} null(s) (read as float64); spec says {wanted}"
                )
        if not ok and wanted == "bool" and column.dtype == object:  # booleans with nulls, as pyarrow reads them
            ok = bool(column.dropna().map(lambda v: isinstance(v, bool | np.bool_)).all())
            detail = "" if ok else f"values other than true, false and null; spec says {wanted}"
        if ok and wanted in ("int64", "int32") and column.isna().any():  # a nullable Int64 column holding NA
            ok, detail = False, f"an integer column with {int(column.isna().sum())} null(s); spec says {wanted}"
        if ok and wanted in _RANGES and column.notna().any():
            (low, high), values = _RANGES[wanted], column.dropna()
            ok = bool(values.min() >= low and values.max() <= high)
            detail = "" if ok else f"values from {values.min()} to {values.max()} do not fit {wanted}"
        outcomes.append(Outcome("schema: dtype", name, "block", ok, detail))
    if frame.empty:
        outcomes.append(Outcome("schema: not empty", None, "block", False, f"{source} has no rows"))
    return outcomes


def check_contents(frame: pd.DataFrame, data: DataSpec, day: date | None) -> list[Outcome]:
    """What the contract says beyond dtypes: keys and timestamps present, at most ``max_null_fraction``
    nulls per feature (drift ignores nulls, so a null surge is invisible downstream), and for a landed day
    (``day``) every timestamp inside that day, one row per entity and timestamp."""
    outcomes = []
    for name in (data.entity_key, data.timestamp_column):
        nulls = int(frame[name].isna().sum())
        outcomes.append(Outcome("contract: no nulls", name, "block", nulls == 0, f"{nulls} null(s)" if nulls else ""))
    for column in data.features:
        allowed = data.max_null_fraction if column.max_null_fraction is None else column.max_null_fraction
        share = float(frame[column.name].isna().mean())
        ok = share <= allowed
        detail = "" if ok else f"{share:.1%} nulls, at most {allowed:.1%} allowed (max_null_fraction)"
        outcomes.append(Outcome("contract: null fraction", column.name, "block", ok, detail))
    if day is not None:
        stamps = pd.to_datetime(frame[data.timestamp_column], utc=True)
        start = pd.Timestamp(day, tz="UTC")
        outside = stamps[(stamps < start) | (stamps >= start + pd.Timedelta(days=1))]
        detail = f"{len(outside)} row(s) outside {day} UTC, e.g. {outside.iloc[0]}" if len(outside) else ""
        outcomes.append(Outcome("contract: timestamps in the day", data.timestamp_column, "block", not detail, detail))
        repeated = int(frame.duplicated([data.entity_key, data.timestamp_column]).sum())
        detail = f"{repeated} repeated ({data.entity_key}, {data.timestamp_column}) pair(s)" if repeated else ""
        outcomes.append(Outcome("contract: one row per entity and time", data.entity_key, "block", not detail, detail))
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
    if result.get("unexpected_percent") is not None:  # with a few of the values, to find them in the data
        examples = list(dict.fromkeys(repr(v) for v in result.get("partial_unexpected_list") or []))[:3]
        return f"{result['unexpected_percent']:.1f}% unexpected" + (f", e.g. {', '.join(examples)}" if examples else "")
    if "observed_value" in result:
        return f"observed {result['observed_value']!r}"[:200]
    return ""


def check_label(frame: pd.DataFrame, data: DataSpec) -> list[Outcome]:
    """A training set's label must fit ``data.task`` (0/1 with both classes, or varying finite numbers):
    said here, with what was found, rather than by the estimator inside ``train_model``."""
    if data.label_column not in frame.columns:
        return [missing_column(frame, data.label_column)]
    problem = task_types.label_problem(data, frame[data.label_column])
    return [
        Outcome(f"contract: label fits data.task {data.task}", data.label_column, "block", not problem, problem or "")
    ]


def validate_frame(
    frame: pd.DataFrame,
    suite_path: Path,
    data: DataSpec,
    source: str,
    day: date | None = None,
    *,
    labelled: bool = False,
) -> ValidationReport:
    """Schema and contract, plus the GX suite; the report says whether the data may go on. ``day``: the
    day a raw partition was landed for (its timestamps must fall inside it); ``labelled``: a training
    set, whose label must fit the task."""
    suite = load_suite(suite_path)
    report = ValidationReport(suite=suite.get("name", suite_path.stem), source=source, rows=len(frame))
    report.outcomes = check_schema(frame, data, source)
    if labelled and report.passed:
        report.outcomes += check_label(frame, data)
    if report.passed:
        report.outcomes += check_contents(frame, data, day) + run_suite(frame, suite, suite_path)
    return report


def validate_stored(
    storage: Storage, spec: PipelineSpec, stage: str, folder: str, day: date | None = None
) -> tuple[ValidationReport, ValidationRecord]:
    """Validate the partition folder ``folder`` for ``stage`` (``raw`` or ``training``) against the spec's
    suite; the full result is kept in the lake, whether the data passed or not. A file that cannot be
    decoded fails the gate like any other bad data."""
    suite = spec.features.raw_suite if stage == "raw" else spec.training.training_suite
    source = storage.location(folder)
    try:
        frame = read_partition(storage, folder)
    except DataError as exc:
        report = ValidationReport(suite=suite.stem, source=source, rows=0)
        report.outcomes = [Outcome("schema: readable parquet", None, "block", False, str(exc))]
    else:
        report = validate_frame(frame, suite, spec.data, source=source, day=day, labelled=stage == "training")
    result_key = keys.validation_result(spec, stage, folder)
    storage.write_bytes(result_key, report.to_json())
    record: ValidationRecord = {
        **report.summary(),  # type: ignore[typeddict-item]
        "result": storage.location(result_key),
        "result_key": result_key,
    }
    return report, record


def quarantine(storage: Storage, spec: PipelineSpec, ds: date | str) -> str:
    """Move a blocked day's raw partition aside, so nothing downstream reads it; returns where it went.
    Each quarantine of the day keeps its own folder: a day landed and blocked again loses no evidence."""
    target = f"{keys.quarantine_partition(spec, ds)}/at={datetime.now(UTC):%Y%m%dT%H%M%S%fZ}"
    storage.move(keys.raw_partition(spec, ds), target)
    return target
