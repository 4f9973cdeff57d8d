"""Drift decision at scale: our reference-profile path against Evidently's ``DataDriftPreset``.

    python benchmarks/drift.py --rows 1000000            # one case, markdown table
    python benchmarks/drift.py --rows 10000000 --baseline stattests

Data: 15 numeric columns (normal, log-normal, uniform, exponential, Poisson counts, a 3-valued column)
and 5 categorical ones, with shifts from none to well past Evidently's thresholds, some close to them.
Baselines: ``preset`` runs Evidently's report on the full data, as the pipeline used to; ``stattests``
runs Evidently's own per-column stattests (same method choice, same thresholds) column by column, for
sizes at which the preset no longer fits in memory.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Row, measure, report, shape, table

from airflow_mlops.spec import Column, DataSpec

NUMERIC_SHIFTS = [0, 0, 0.02, 0.05, 0.08, 0.09, 0.11, 0.12, 0.15, 0.3, 0, 0.06, 0.13, 0, 0.2]  # in std units
CATEGORY_LEVELS = [3, 5, 12, 40, 2]
CATEGORY_SHIFTS = [0, 0.02, 0.1, 0.3, 0.05]  # share of rows moved to the first level
DATA = DataSpec(
    raw_path="raw",
    labels_path="labels",
    entity_key="id",
    label_column="label",
    features=[Column(name=f"num_{i:02d}", dtype="float64") for i in range(len(NUMERIC_SHIFTS))]
    + [Column(name=f"cat_{i}", dtype="string") for i in range(len(CATEGORY_LEVELS))],
)
DRIFT_SHARE = 0.5


def _numeric(rng: np.random.Generator, index: int, rows: int, shift: float) -> np.ndarray:
    kind = index % 6
    if kind == 0:
        values = rng.normal(50, 10, rows)
    elif kind == 1:
        values = rng.lognormal(3, 0.6, rows)
    elif kind == 2:
        values = rng.uniform(0, 100, rows)
    elif kind == 3:
        values = rng.exponential(5, rows)
    elif kind == 4:
        values = rng.poisson(6, rows).astype(np.float64)
    else:
        values = rng.choice([0.0, 1.0, 2.0], rows, p=[0.5, 0.3, 0.2])
        moved = rng.random(rows) < shift  # few values: a shift moves rows between them
        return np.where(moved, 2.0, values)
    return values + shift * float(np.std(values))


def _categorical(rng: np.random.Generator, levels: int, rows: int, shift: float) -> pd.Categorical:
    names = [f"level_{i}" for i in range(levels)]
    codes = rng.integers(0, levels, rows)
    codes = np.where(rng.random(rows) < shift, 0, codes)
    return pd.Categorical.from_codes(codes, categories=names)


def generate(rows: int, folder: Path, seed: int = 0) -> None:
    """``reference.parquet`` and ``current.parquet`` (the current one shifted) of ``rows`` rows each."""
    rng = np.random.default_rng(seed)
    for side, factor in (("reference", 0.0), ("current", 1.0)):
        frame = pd.DataFrame(
            {f"num_{i:02d}": _numeric(rng, i, rows, shift * factor) for i, shift in enumerate(NUMERIC_SHIFTS)}
        )
        for i, (levels, shift) in enumerate(zip(CATEGORY_LEVELS, CATEGORY_SHIFTS, strict=True)):
            frame[f"cat_{i}"] = _categorical(rng, levels, rows, shift * factor)
        frame.to_parquet(folder / f"{side}.parquet", index=False)
        del frame


def _verdicts(result: Any) -> dict[str, Any]:
    return {
        "columns": {c.column: [c.method, c.score, c.drifted] for c in result.columns},
        "dataset_drift": result.dataset_drift,
    }


def _stattests(reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, Any]:
    """Evidently's per-column computation (as in ``get_one_column_drift``), one column at a time."""
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    columns = {}
    for name in DATA.feature_names:
        column_type = ColumnType.Numerical if name in DATA.numerical else ColumnType.Categorical
        ref = reference[name].replace([-np.inf, np.inf], np.nan).dropna()
        cur = current[name].replace([-np.inf, np.inf], np.nan).dropna()
        if column_type == ColumnType.Categorical:  # Evidently's Dataset hands categories over as objects
            ref, cur = ref.astype(object), cur.astype(object)
        test = get_stattest(ref, cur, column_type, None)
        outcome = test(ref, cur, column_type, test.default_threshold)
        columns[name] = [test.display_name, float(outcome.drift_score), bool(outcome.drifted)]
    share = sum(drifted for _, _, drifted in columns.values()) / len(columns)
    return {"columns": columns, "dataset_drift": share >= DRIFT_SHARE}


def worker(stage: str, folder: Path) -> None:
    from airflow_mlops.steps import drift as drift_steps
    from airflow_mlops.storage import LocalStorage, read_parquet

    storage = LocalStorage(folder)
    if stage == "profile":
        with report():
            reference = read_parquet(storage, "reference.parquet")
            drift_steps.build_profile(reference, DATA).save(storage, "profile")
    elif stage in ("decide", "decide+html"):
        with report() as out:
            profile = drift_steps.ReferenceProfile.load(storage, "profile")
            assert profile is not None
            current = read_parquet(storage, "current.parquet")
            result = drift_steps.compare(profile, current, DATA, DRIFT_SHARE)
            if stage == "decide+html":
                html = drift_steps.render_report(profile, current, result, DATA).get_html_str(as_iframe=False)
                out["html_bytes"] = len(html)
            out.update(_verdicts(result))
    elif stage == "preset":
        with report() as out:
            reference = read_parquet(storage, "reference.parquet")
            current = read_parquet(storage, "current.parquet")
            result, snapshot = drift_steps.evidently_drift(reference, current, DATA, DRIFT_SHARE)
            out["html_bytes"] = len(snapshot.get_html_str(as_iframe=False))
            out.update(_verdicts(result))
    elif stage == "stattests":
        with report() as out:
            out.update(_stattests(read_parquet(storage, "reference.parquet"), read_parquet(storage, "current.parquet")))
    else:
        raise SystemExit(f"unknown stage {stage!r}")


def agreement(ours: dict[str, Any], base: dict[str, Any]) -> str:
    columns = ours["columns"]
    same = [n for n in columns if columns[n][0] == base["columns"][n][0] and columns[n][2] == base["columns"][n][2]]
    gap = max(abs(columns[n][1] - base["columns"][n][1]) for n in columns)
    dataset = "same" if ours["dataset_drift"] == base["dataset_drift"] else "DIFFERENT"
    drifted = sum(v[2] for v in columns.values())
    return (
        f"{len(same)}/{len(columns)} column verdicts ({drifted} drifted), dataset verdict {dataset}, "
        f"max score gap {gap:.1e}"
    )


def run(rows: int, baseline: str = "preset") -> list[Row]:
    """Generate the data, run every stage in its own process, return the table rows."""
    script, cols = Path(__file__), len(DATA.feature_names)
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
        folder = Path(tmp)
        generate(rows, folder)
        profile = measure(script, "worker", "profile", str(folder))
        decide = measure(script, "worker", "decide", str(folder))
        with_html = measure(script, "worker", "decide+html", str(folder))
        base = measure(script, "worker", baseline, str(folder))
    agree = agreement(decide, base)
    label = "Evidently preset, full data" if baseline == "preset" else "Evidently stattests per column"
    return [
        Row("drift: reference profile (once per champion)", shape(rows, cols), profile["seconds"],
            profile["peak_mb"], None, None, "—"),
        Row(f"drift decision vs {label}", shape(rows, cols), decide["seconds"], decide["peak_mb"],
            base["seconds"], base["peak_mb"], agree),
        Row("drift decision + Evidently HTML report", shape(rows, cols), with_html["seconds"],
            with_html["peak_mb"], base["seconds"] if baseline == "preset" else None,
            base["peak_mb"] if baseline == "preset" else None, agreement(with_html, base)),
    ]  # fmt: skip


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "worker":
        worker(sys.argv[2], Path(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--baseline", choices=["preset", "stattests"], default="preset")
    args = parser.parse_args()
    print(table(run(args.rows, args.baseline)))


if __name__ == "__main__":
    main()
