"""Data drift of the day's features against the champion's training data, decided the way Evidently's
``DataDriftPreset`` decides (its default method per column and type, its thresholds), at any scale.

Evidently keeps both frames in memory and computes each column's statistic several times (1M x 20 rows:
~100 s, 1.6 GB). Here the reference is summarised once per champion into a :class:`ReferenceProfile`,
and a daily run scans only the current partition, one column at a time:

* reference of at most 1000 rows: Evidently's own tests (K-S, chi-square, z) on the stored values;
* larger reference: normed Wasserstein distance for numeric columns with more than 5 distinct values,
  Jensen-Shannon distance otherwise, exactly as Evidently computes them. Categorical counts are exact.
  A numeric reference is kept as at most ``ATOMS`` equal-weight quantile atoms; the distance from them to
  the sorted current column is computed exactly, so the only error is W(reference, atoms), which is
  measured when the profile is built and kept below ``MAX_ATOM_ERROR`` (triangle inequality).

The HTML is still Evidently's report, rendered on bounded samples of both sides with the full-data
scores registered as Evidently stattests, so the page a user opens and the decision always agree.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from airflow_mlops import keys
from airflow_mlops.contracts import DriftRecord, Tag
from airflow_mlops.spec import DataSpec, PipelineSpec
from airflow_mlops.storage import DataError, Storage, read_parquet, read_partition

if TYPE_CHECKING:
    from datetime import date

    from airflow_mlops.steps.registry import MlflowTarget

log = logging.getLogger(__name__)

SMALL_REFERENCE_ROWS = 1000  # Evidently's switch from statistical tests to distances
FEW_VALUES = 5  # numeric columns with at most this many distinct values are compared as categories
ATOMS = 10_000
MAX_ATOM_ERROR = 1e-3  # in normed-Wasserstein units (threshold 0.1); the profile grows until this close
REPORT_SAMPLE_ROWS = 20_000


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
    prediction: ColumnDrift | None = None  # the champion's scores against its scores of the reference

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
            "prediction_drift": None if self.prediction is None else self.prediction.drifted,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "drift_share_threshold": self.drift_share_threshold,
            "columns": [asdict(c) for c in self.columns],
            "prediction": None if self.prediction is None else asdict(self.prediction),
        }


@dataclass(frozen=True)
class ColumnProfile:
    """What drift detection needs to know about one reference column (finite, non-null values only)."""

    name: str
    kind: Literal["numerical", "categorical"]
    rows: int
    values: list[Any] | None = None  # every value, for a small reference (Evidently's own tests)
    counts: dict[Any, int] | None = None  # value counts: categorical, or numeric with few distinct values
    atoms: list[float] | None = None  # numeric: sorted equal-weight quantile atoms
    std: float | None = None  # numeric: population std, Evidently's norm for Wasserstein
    atom_error: float = 0.0  # normed W(reference, atoms): bound on the score error


@dataclass(frozen=True)
class ReferenceProfile:
    rows: int
    columns: dict[str, ColumnProfile]
    sample: pd.DataFrame  # bounded sample of the reference, for the report's plots
    prediction: ColumnProfile | None = None  # the champion's own scores of the reference (prediction drift)

    def save(self, storage: Storage, key: str) -> None:
        """Write the profile folder ``key``: the sample first, ``profile.json`` last, so that on S3 (one PUT per
        file) a killed write never leaves a profile without its sample."""
        sample = io.BytesIO()
        self.sample.to_parquet(sample, index=False)
        document = {
            "rows": self.rows,
            "columns": [_profile_document(c) for c in self.columns.values()],
            "prediction": None if self.prediction is None else _profile_document(self.prediction),
        }
        storage.replace_folder(
            key, {"reference_sample.parquet": sample.getvalue(), "profile.json": json.dumps(document).encode()}
        )

    @classmethod
    def load(cls, storage: Storage, key: str) -> ReferenceProfile | None:
        """The profile stored at ``key``, or ``None`` when there is none yet (or only part of one, which the
        caller then rebuilds)."""
        if not (storage.exists(f"{key}/profile.json") and storage.exists(f"{key}/reference_sample.parquet")):
            return None
        document = json.loads(storage.read_bytes(f"{key}/profile.json"))
        columns = {column["name"]: _profile_from(column) for column in document["columns"]}
        sample = read_parquet(storage, f"{key}/reference_sample.parquet")
        prediction = document.get("prediction")  # absent from profiles written before prediction drift
        return cls(document["rows"], columns, sample, None if prediction is None else _profile_from(prediction))


def _profile_document(column: ColumnProfile) -> dict[str, Any]:
    return {**asdict(column), "counts": None if column.counts is None else [[k, v] for k, v in column.counts.items()]}


def _profile_from(document: dict[str, Any]) -> ColumnProfile:
    counts = document["counts"]
    return ColumnProfile(**{**document, "counts": None if counts is None else {k: v for k, v in counts}})


def _finite(values: pd.Series, kind: str) -> Any:
    """The column without nulls (and, when numeric, without infinities), as Evidently cleans it:
    a float array for numeric columns, a series (keeping a categorical dtype cheap) otherwise."""
    if kind == "numerical":  # a nullable Int32 column's NA becomes NaN here
        array = values.astype(np.float64).to_numpy()
        return array[np.isfinite(array)]
    return values.dropna()


def _value_counts(values: Any) -> dict[Any, int]:
    counts = pd.Series(values).value_counts()
    return {k.item() if isinstance(k, np.generic) else k: int(c) for k, c in counts.items() if c > 0}


def wasserstein_to_atoms(atoms: np.ndarray, current: np.ndarray) -> float:
    """First Wasserstein distance between equal-weight ``atoms`` (sorted) and the sorted sample
    ``current``, exactly: the integral over q of |Q_atoms(q) - Q_current(q)|, atom interval by atom
    interval, from prefix sums of ``current``. O(n + k log n), no (n + k)-sized merge."""
    k, n = len(atoms), len(current)
    shift = float(current[n // 2])  # centre the values so the prefix sums keep their precision
    centred = current - shift
    prefix = np.zeros(n + 1)
    np.cumsum(centred, out=prefix[1:])

    def integral(q: np.ndarray) -> np.ndarray:  # integral of Q_current - shift from 0 to q
        position = q * n
        index = np.minimum(np.floor(position).astype(np.int64), n - 1)
        return (prefix[index] + (position - index) * centred[index]) / n

    start = np.arange(k) / k
    end = np.arange(1, k + 1) / k
    crossing = np.clip(np.searchsorted(current, atoms, side="left") / n, start, end)
    level = atoms - shift
    below = level * (crossing - start) - (integral(crossing) - integral(start))
    above = (integral(end) - integral(crossing)) - level * (end - crossing)
    return float(np.sum(below + above))


def _numeric_profile(name: str, values: np.ndarray) -> ColumnProfile:
    ordered = np.sort(values)
    n = len(ordered)
    std = float(np.std(ordered))
    norm = max(std, 0.001)
    distinct = int(np.count_nonzero(ordered[1:] != ordered[:-1])) + 1 if n else 0  # already sorted
    counts = _value_counts(ordered) if distinct <= FEW_VALUES else None
    size = min(n, ATOMS)
    while True:
        atoms = ordered[((np.arange(size) + 0.5) * n / size).astype(np.int64)]
        error = wasserstein_to_atoms(atoms, ordered) / norm if size < n else 0.0
        if error <= MAX_ATOM_ERROR or size == n:
            break
        size = min(n, size * 4)
    return ColumnProfile(name, "numerical", n, counts=counts, atoms=atoms.tolist(), std=std, atom_error=error)


def _column_profile(name: str, kind: Literal["numerical", "categorical"], column: pd.Series) -> ColumnProfile:
    values = _finite(column, kind)
    if len(values) == 0:
        raise DataError(f"reference column '{name}' has no values: cannot detect drift against it")
    if len(values) <= SMALL_REFERENCE_ROWS:
        return ColumnProfile(name, kind, len(values), values=np.asarray(values).tolist())
    if kind == "numerical":
        return _numeric_profile(name, values)
    return ColumnProfile(name, kind, len(values), counts=_value_counts(values))


def build_profile(reference: pd.DataFrame, data: DataSpec, seed: int = 0) -> ReferenceProfile:
    """Summarise the reference (the champion's training set) once; daily runs only read the summary."""
    _require_columns(reference, data, "reference")
    columns = {
        name: _column_profile(name, "numerical" if name in data.numerical else "categorical", reference[name])
        for name in data.feature_names
    }
    return ReferenceProfile(len(reference), columns, report_sample(reference, data, seed))


def prediction_column(data: DataSpec) -> tuple[str, Literal["numerical", "categorical"]]:
    """The stored prediction whose distribution is watched: the likeliest class, or the score."""
    return ("prediction", "categorical") if data.task == "multiclass" else ("score", "numerical")


def _jensenshannon(reference: dict[Any, int], current: dict[Any, int]) -> float:
    """Jensen-Shannon distance (natural log) of two value-count tables, as ``scipy.spatial.distance``
    computes it, without the second it takes to import that package."""
    values = list(reference.keys() | current.keys())
    p = np.array([reference.get(v, 0) for v in values], dtype=np.float64)
    q = np.array([current.get(v, 0) for v in values], dtype=np.float64)
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def relative_entropy(x: np.ndarray) -> float:
        present = x > 0
        return float(np.sum(x[present] * np.log(x[present] / m[present])))

    return float(np.sqrt(max(relative_entropy(p) + relative_entropy(q), 0.0) / 2))


def _column_drift(profile: ColumnProfile, column: pd.Series) -> ColumnDrift:
    values = _finite(column, profile.kind)
    if len(values) == 0:
        raise DataError(f"current column '{profile.name}' has no values: cannot detect drift on it")
    if profile.values is not None:  # small reference: Evidently picks and runs the test itself
        from evidently.legacy.calculations.stattests.registry import get_stattest
        from evidently.legacy.core import ColumnType

        column_type = ColumnType.Numerical if profile.kind == "numerical" else ColumnType.Categorical
        reference = pd.Series(profile.values, name=profile.name)
        current = pd.Series(np.asarray(values), name=profile.name)
        test = get_stattest(reference, current, column_type, None)
        outcome = test(reference, current, column_type, test.default_threshold)
        return ColumnDrift(  # Evidently's verdicts can be numpy scalars: plain ones serialise to JSON
            profile.name, test.display_name, test.default_threshold, float(outcome.drift_score), bool(outcome.drifted)
        )

    if profile.kind == "categorical":
        assert profile.counts is not None
        return _distance(profile.name, JENSEN_SHANNON, _jensenshannon(profile.counts, _value_counts(values)))
    assert profile.atoms is not None and profile.std is not None
    values.sort()  # our own copy (the finite values), sorted in place
    if profile.counts is not None:  # few distinct values: compared as categories, unless today brings more
        distinct = values[np.concatenate(([True], values[1:] != values[:-1]))]
        if len(distinct) <= FEW_VALUES and len(profile.counts.keys() | set(distinct.tolist())) <= FEW_VALUES:
            score = _jensenshannon(profile.counts, _value_counts(values))
            return _distance(profile.name, JENSEN_SHANNON, score)
    score = wasserstein_to_atoms(np.asarray(profile.atoms), values) / max(profile.std, 0.001)
    return _distance(profile.name, WASSERSTEIN, score)


# Evidently's distance stattests above ``SMALL_REFERENCE_ROWS``: display name and default threshold
# (checked against Evidently's registry in the tests), kept here so a daily run never imports Evidently.
WASSERSTEIN = ("Wasserstein distance (normed)", 0.1)
JENSEN_SHANNON = ("Jensen-Shannon distance", 0.1)


def _distance(column: str, stattest: tuple[str, float], score: float) -> ColumnDrift:
    """A distance verdict as Evidently gives it: drifted at or above the stattest's default threshold."""
    method, threshold = stattest
    return ColumnDrift(column, method, threshold, float(score), bool(score >= threshold))


def _require_columns(frame: pd.DataFrame, data: DataSpec, side: str) -> None:
    missing = [c for c in data.feature_names if c not in frame.columns]
    if missing:
        raise DataError(f"{side} data lacks feature columns {missing} (has {sorted(map(str, frame.columns))})")


def compare(profile: ReferenceProfile, current: pd.DataFrame, data: DataSpec, drift_share: float) -> DriftResult:
    """Per-column verdicts and the dataset-level decision for ``current`` against the profile."""
    _require_columns(current, data, "current")
    columns = [_column_drift(profile.columns[name], current[name]) for name in data.feature_names]
    return DriftResult(columns, drift_share, profile.rows, len(current))


_FULL_DATA_SCORES: ContextVar[dict[str, ColumnDrift]] = ContextVar("full_data_scores")


def _full_data_stattest(method: str) -> str:
    """Name of an Evidently stattest that reports the full-data score of the column it is asked about."""
    from evidently.legacy.calculations.stattests.registry import StatTest, _registered_stat_tests, register_stattest
    from evidently.legacy.core import ColumnType

    name = f"full-data {method}"
    if name not in _registered_stat_tests:

        def lookup(reference: pd.Series, current: pd.Series, feature_type: Any, threshold: float) -> tuple[float, bool]:
            column = _FULL_DATA_SCORES.get()[str(current.name)]
            return column.score, column.drifted

        register_stattest(
            StatTest(name, f"{method} (full data)", [ColumnType.Numerical, ColumnType.Categorical]), lookup
        )
    return name


@contextmanager
def _scores_for_report(result: DriftResult) -> Iterator[None]:
    token = _FULL_DATA_SCORES.set({c.column: c for c in result.columns})
    try:
        yield
    finally:
        _FULL_DATA_SCORES.reset(token)


def report_sample(frame: pd.DataFrame, data: DataSpec, seed: int) -> pd.DataFrame:
    """At most ``REPORT_SAMPLE_ROWS`` rows of the feature columns, drawn without copying the whole frame,
    in the types Evidently's report handles whatever the stored dtypes (nullable Int32, boolean, string)."""
    rows = np.arange(len(frame))
    if len(frame) > REPORT_SAMPLE_ROWS:
        rows = np.sort(np.random.default_rng(seed).choice(len(frame), REPORT_SAMPLE_ROWS, replace=False))
    sample = frame.iloc[rows][data.feature_names].reset_index(drop=True)
    # the types Evidently handles: floats for numerical columns, Python objects (None for a null) otherwise
    for column in data.features:
        values = sample[column.name]
        sample[column.name] = (
            values.astype(object).where(values.notna(), None) if column.categorical else values.astype("float64")
        )
    return sample


def render_report(
    profile: ReferenceProfile, current: pd.DataFrame, result: DriftResult, data: DataSpec, seed: int = 0
) -> Any:
    """Evidently's drift report (report + tests) showing ``result``: distributions from bounded samples,
    scores and verdicts from the full data. Raises if Evidently's verdicts differ from ``result``."""
    sample = report_sample(current, data, seed)
    methods = {c.column: _full_data_stattest(c.method) for c in result.columns}
    thresholds = {c.column: c.threshold for c in result.columns}
    with _scores_for_report(result):
        snapshot = run_report(
            profile.sample, sample, data, result.drift_share_threshold, methods=methods, thresholds=thresholds
        )
    shown = read_verdicts(snapshot.dict(), result.drift_share_threshold, result.reference_rows, result.current_rows)
    if shown.drifted_columns != result.drifted_columns:
        raise RuntimeError(f"report shows {shown.drifted_columns} drifted, decision says {result.drifted_columns}")
    return snapshot


def run_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    data: DataSpec,
    drift_share: float,
    methods: dict[str, str] | None = None,
    thresholds: dict[str, float] | None = None,
) -> Any:
    """Evidently's ``DataDriftPreset`` snapshot (report + tests) for the spec's feature columns."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=data.numerical, categorical_columns=data.categorical)
    columns = data.feature_names
    preset = DataDriftPreset(
        columns=columns, drift_share=drift_share, per_column_method=methods, per_column_threshold=thresholds
    )
    return Report([preset], include_tests=True).run(
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


def evidently_drift(
    reference: pd.DataFrame, current: pd.DataFrame, data: DataSpec, drift_share: float
) -> tuple[DriftResult, Any]:
    """Evidently's ``DataDriftPreset`` on the full data: the baseline :func:`compare` is held to."""
    snapshot = run_report(reference, current, data, drift_share)
    return read_verdicts(snapshot.dict(), drift_share, len(reference), len(current)), snapshot


def champion_profile(target: MlflowTarget, storage: Storage, spec: PipelineSpec, version: str) -> ReferenceProfile:
    """The reference profile of champion ``version``: built from its training set on its first drift run,
    then read back."""
    key = keys.reference_profile(spec, version)
    profile = ReferenceProfile.load(storage, key)
    if profile is not None and profile.prediction is not None:
        return profile
    reference = target.client().get_model_version(spec.registered_model_name, version).tags.get(Tag.TRAINING_SET)
    if not reference:
        raise DataError(f"champion v{version} has no '{Tag.TRAINING_SET}' tag: no drift reference")
    frame = None  # the training set, read once when both profiles are built
    if profile is None:
        frame = read_parquet(storage, storage.key_of(reference))
        profile = build_profile(frame, spec.data)
    profile = replace(profile, prediction=prediction_profile(target, storage, spec, version, reference, frame))
    profile.save(storage, key)
    return profile


def prediction_profile(
    target: MlflowTarget,
    storage: Storage,
    spec: PipelineSpec,
    version: str,
    reference: str,
    frame: pd.DataFrame | None = None,
) -> ColumnProfile | None:
    """The champion's scores of its own holdout (rows it was not fitted on, so in-sample confidence does not
    read as drift), profiled like a feature. A training set or model that cannot be read leaves prediction
    drift off for the day, with a warning, and feature drift goes on; an outage is raised, to be retried.
    ``frame``: the training set at ``reference``, when the caller has read it already."""
    from airflow_mlops.spec import SpecError
    from airflow_mlops.steps.monitoring import score
    from airflow_mlops.steps.training import load_model, time_split

    try:
        if frame is None:
            frame = read_parquet(storage, storage.key_of(reference))
        holdout = time_split(frame, spec.data.timestamp_column, spec.training.holdout_days).holdout
        scored = score(load_model(f"models:/{spec.registered_model_name}/{version}"), holdout, spec, version)
        name, kind = prediction_column(spec.data)
        return _column_profile(name, kind, scored[name])
    except (DataError, SpecError) as exc:
        log.warning("no prediction drift against champion v%s: %s", version, exc)
        return None


def detect(target: MlflowTarget, storage: Storage, spec: PipelineSpec, ds: date, version: str) -> DriftRecord:
    """The day's features against champion ``version``'s training data, with Evidently's HTML report of the
    same verdicts and the verdicts as JSON, both kept in the lake."""
    profile = champion_profile(target, storage, spec, version)
    current = read_partition(storage, keys.offline_partition(spec, ds))
    result = compare(profile, current, spec.data, spec.monitoring.drift.max_drifted_share)
    if profile.prediction is not None and storage.exists(keys.predictions(spec, ds)):
        predictions = read_parquet(storage, keys.predictions(spec, ds))
        mine = predictions.loc[predictions["model_version"].astype(str) == str(version), profile.prediction.name]
        if len(mine):
            result = replace(result, prediction=_column_drift(profile.prediction, mine))
    snapshot = render_report(profile, current, result, spec.data)
    html, verdicts = keys.report(spec, ds, "drift.html"), keys.report(spec, ds, "drift.json")
    storage.write_bytes(html, snapshot.get_html_str(as_iframe=False).encode())
    storage.write_bytes(verdicts, json.dumps(result.to_dict(), indent=2).encode())
    return {
        **result.summary(),  # type: ignore[typeddict-item]
        "champion_version": version,
        "report": storage.location(html),
        "report_key": html,
        "report_json": storage.location(verdicts),
    }
