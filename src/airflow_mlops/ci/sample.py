"""Sample partitions for a pipeline's CI run: the ones a project keeps in ``include/samples/<pipeline>/``
(laid out like the lake: ``<data.raw_path>/date=YYYY-MM-DD/*.parquet`` and the same for
``<data.labels_path>``), or, when there are none, days synthesised from the spec's data contract and the
bounds its expectation suites set, with a label that depends on the features (so a model can learn it).
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from airflow_mlops import keys
from airflow_mlops.spec import PipelineSpec
from airflow_mlops.storage import DataError

ROWS_PER_DAY = 250
SEED = 20260101


def sample_root(project: Path, spec: PipelineSpec) -> Path:
    """Where a project keeps the sample partitions of a pipeline."""
    return project / "include" / "samples" / spec.name


def sample_days(spec: PipelineSpec) -> int:
    """Enough days to train (at least four before the holdout), all inside one training window."""
    return min(spec.training.window_days, max(8, spec.training.holdout_days + 4))


@dataclass
class Bounds:
    """What a column's expectations allow: ``expect_column_values_to_be_between``, ``..._in_set`` and
    ``expect_column_mean_to_be_between`` (blocking or not: the sample should pass warnings too)."""

    low: float | None = None
    high: float | None = None
    values: list[Any] = field(default_factory=list)
    mean: tuple[float | None, float | None] = (None, None)


def min_rows(suite: Path) -> int:
    """The least rows a suite's ``expect_table_row_count_to_be_between`` asks for (0 without one)."""
    counts = [
        int(e.get("kwargs", {}).get("min_value") or 0)
        for e in json.loads(suite.read_text()).get("expectations", [])
        if e.get("type") == "expect_table_row_count_to_be_between"
    ]
    return max(counts, default=0)


def suite_bounds(*suites: Path) -> dict[str, Bounds]:
    """Per-column bounds of the suites' expectations."""
    bounds: dict[str, Bounds] = {}
    for suite in suites:
        for expectation in json.loads(suite.read_text()).get("expectations", []):
            kind, kwargs = expectation.get("type", ""), expectation.get("kwargs", {})
            if "column" not in kwargs:
                continue
            column = bounds.setdefault(kwargs["column"], Bounds())
            if kind == "expect_column_values_to_be_between":
                column.low = _tighter(column.low, kwargs.get("min_value"), max)
                column.high = _tighter(column.high, kwargs.get("max_value"), min)
            elif kind == "expect_column_values_to_be_in_set":
                column.values = list(kwargs.get("value_set") or [])
            elif kind == "expect_column_mean_to_be_between":
                column.mean = (kwargs.get("min_value"), kwargs.get("max_value"))
    return bounds


def _tighter(current: float | None, new: float | None, pick: Any) -> float | None:
    return new if current is None else current if new is None else pick(current, new)


def _centre_spread(bounds: Bounds) -> tuple[float, float]:
    """The middle of what the suites allow (the mean range's middle if there is one), and a spread that
    keeps most values inside."""
    low, high = bounds.low, bounds.high
    mean_low, mean_high = bounds.mean
    if mean_low is not None and mean_high is not None:
        centre = (mean_low + mean_high) / 2
    elif low is not None and high is not None:
        centre = (low + high) / 2
    else:
        centre = (low or 0) + 10 if high is None else high - 10
    spread = (high - low) / 8 if low is not None and high is not None else max(abs(centre) / 4, 3.0)
    if mean_low is not None and mean_high is not None:
        spread = min(spread, max((mean_high - mean_low), 1.0))
    return centre, spread


def _clip(values: np.ndarray, bounds: Bounds) -> np.ndarray:
    low, high = bounds.low, bounds.high
    return np.clip(values, low if low is not None else -np.inf, high if high is not None else np.inf)


def _numbers(rng: np.random.Generator, bounds: Bounds, n: int, integer: bool) -> np.ndarray:
    centre, spread = _centre_spread(bounds)
    values = _clip(rng.normal(centre, spread, n), bounds)
    return np.round(values).astype("int64") if integer else np.round(values, 3)


def synthesise(spec: PipelineSpec, root: Path, first_day: date) -> list[date]:
    """Write :func:`sample_days` days of raw partitions and their labels (arriving the same day) under
    ``root``, valid for the spec's suites; the same spec always gives the same files. The label follows
    the features: a 0/1 draw from a logistic of them, the classes along them with noise (multiclass), or
    (regression) a linear function of them plus noise."""
    data = spec.data
    bounds = suite_bounds(spec.features.raw_suite, spec.training.training_suite)
    days = sample_days(spec)  # each day as the raw suite wants it, together what the training suite wants
    training_rows = math.ceil(1.5 * min_rows(spec.training.training_suite) / days)
    rows = max(ROWS_PER_DAY, min_rows(spec.features.raw_suite), training_rows)
    rng = np.random.default_rng(SEED)
    weights = {c.name: rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.0) for c in data.features}
    label = bounds.get(data.label_column, Bounds())
    classes = sorted(label.values) if len(label.values) == 2 else [0, 1]
    mean_low, mean_high = label.mean
    positive_rate = (mean_low + mean_high) / 2 if mean_low is not None and mean_high is not None else 0.3
    written = []
    for index in range(days):
        ds = first_day + timedelta(days=index)
        ids = np.arange(1, rows + 1, dtype="int64")
        frame = pd.DataFrame(
            {
                data.entity_key: [f"{data.entity_key}-{i:06d}" for i in ids]
                if data.entity_key_dtype == "string"
                else ids,
                data.timestamp_column: pd.Timestamp(datetime.combine(ds, datetime.min.time(), UTC)),
            }
        )
        signal = np.zeros(rows)
        for column in data.features:
            column_bounds = bounds.get(column.name, Bounds())
            if column.dtype == "bool":
                codes = rng.integers(0, 2, rows)
                frame[column.name] = codes.astype(bool)
            elif column.categorical:  # as it lands: a pandas categorical for "category", strings otherwise
                levels = [str(v) for v in column_bounds.values] or [f"{column.name}_{k}" for k in "abc"]
                codes = rng.integers(0, len(levels), rows)
                labels = np.asarray(levels, dtype=object)[codes]
                frame[column.name] = pd.Categorical(labels, categories=levels) if column.dtype == "category" else labels
            else:
                codes = _numbers(rng, column_bounds, rows, integer=column.dtype.startswith("int"))
                frame[column.name] = codes.astype(column.dtype)
            signal += weights[column.name] * (codes - codes.mean()) / max(float(codes.std()), 1e-9)
        signal = 2.5 * signal / math.sqrt(len(data.features))
        if data.task == "regression":
            centre, spread = _centre_spread(label)
            noise = rng.normal(0.0, 0.3, rows)
            target = np.round(_clip(centre + spread * (signal / max(float(signal.std()), 1e-9) + noise), label), 3)
        elif data.task == "multiclass":  # the classes in order along the signal, as many rows each
            noisy = signal + rng.normal(0.0, 0.5, rows)
            order = np.argsort(np.argsort(noisy))
            target = np.asarray(data.classes, dtype=object)[order * len(data.classes) // rows]
        else:
            probability = 1 / (1 + np.exp(-(signal + _logit_offset(signal, positive_rate))))
            target = np.where(rng.random(rows) < probability, classes[1], classes[0])
        labels = frame[[data.entity_key, data.timestamp_column]].assign(**{data.label_column: target})
        _write(root, keys.partition(data.raw_path, ds), frame)
        _write(root, keys.partition(data.labels_path, ds), labels)
        written.append(ds)
    return written


def _logit_offset(signal: np.ndarray, rate: float) -> float:
    """The shift of the logits that makes the mean probability ``rate`` (bisection: it is monotonic)."""
    low, high = -20.0, 20.0
    for _ in range(60):
        middle = (low + high) / 2
        if float(np.mean(1 / (1 + np.exp(-(signal + middle))))) < rate:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def _write(root: Path, key: str, frame: pd.DataFrame) -> None:
    folder = root / key
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(folder / "part-0.parquet", index=False)


def kept_days(spec: PipelineSpec, sample: Path) -> list[date]:
    """The days of raw partitions in a kept sample, oldest first."""
    raw = sample / spec.data.raw_path
    return sorted(date.fromisoformat(keys.partition_day(p.name)) for p in raw.glob("date=*") if p.is_dir())


def stage(spec: PipelineSpec, project: Path, lake: Path, first_day: date) -> tuple[list[date], str]:
    """Put the pipeline's sample into ``lake``: the project's own if it keeps one, else a synthesised one.
    Returns the days and where they came from."""
    kept = sample_root(project, spec)
    if not kept.is_dir():
        return synthesise(spec, lake, first_day), "partitions synthesised from the data contract and suites"
    days = kept_days(spec, kept)
    if not days:  # a kept sample in the wrong layout must not pass unnoticed on synthesised data
        raise DataError(f"{kept} holds no raw partitions at {spec.data.raw_path}/date=YYYY-MM-DD/ (data.raw_path)")
    shutil.copytree(kept, lake, dirs_exist_ok=True)
    return days, f"sample partitions in {kept}"
