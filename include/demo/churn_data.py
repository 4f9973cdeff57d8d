"""Deterministic demo data: daily customer snapshots for a churn model, with delayed labels.

The scenario is built to walk every branch of the level-1 pipelines:

* days ``[0, covariate_shift_day)``: a stable world, nothing drifts;
* one corrupt day (``corrupt_day``): a null surge and out-of-range values that the GX gate must block;
* from ``covariate_shift_day``: prices go up, usage goes down and support calls rise (feature drift);
* from ``concept_shift_day``: the same features now mean something else for churn (concept drift),
  which only shows once labels arrive, ``label_delay_days`` after each snapshot.

Everything derives from ``seed`` and the day index, so two runs write byte-identical files.
Run ``python include/demo/churn_data.py --help`` for the command line.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import UTC, date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

CONTRACTS = ("month-to-month", "one-year", "two-year")
REGIONS = ("north", "south", "east", "west")


@dataclass(frozen=True)
class Scenario:
    start: date = date(2026, 1, 1)
    days: int = 60
    customers: int = 1000
    label_delay_days: int = 3
    corrupt_day: int | None = 9
    covariate_shift_day: int = 30
    concept_shift_day: int = 45
    seed: int = 7

    def day(self, index: int) -> date:
        return self.start + timedelta(days=index)


def _customers(scenario: Scenario) -> pd.DataFrame:
    """Attributes that stay put for a customer over the whole scenario."""
    rng = np.random.default_rng([scenario.seed, 0])
    n = scenario.customers
    return pd.DataFrame(
        {
            "customer_id": np.arange(1, n + 1, dtype="int64"),
            "base_tenure": rng.integers(1, 72, n),
            "base_charges": rng.gamma(9.0, 8.0, n),
            "contract_draw": rng.random(n),
            "region": rng.choice(REGIONS, n),
            "num_products": rng.integers(1, 6, n).astype("int64"),
            "satisfaction_base": rng.normal(3.6, 0.8, n),
        }
    )


def snapshot(scenario: Scenario, index: int) -> pd.DataFrame:
    """Feature snapshot of every customer on day ``index`` (one row per customer)."""
    rng = np.random.default_rng([scenario.seed, 1, index])
    base = _customers(scenario)
    n = len(base)
    shifted = index >= scenario.covariate_shift_day
    month_to_month_share = 0.75 if shifted else 0.5
    contract = np.where(
        base["contract_draw"] < month_to_month_share,
        CONTRACTS[0],
        np.where(base["contract_draw"] < month_to_month_share + 0.3, CONTRACTS[1], CONTRACTS[2]),
    )
    price_factor = 1.35 if shifted else 1.0
    frame = pd.DataFrame(
        {
            "customer_id": base["customer_id"],
            "event_timestamp": pd.Timestamp(scenario.day(index), tz=UTC),
            "tenure_months": (base["base_tenure"] + index // 30).astype("int64"),
            "monthly_charges": (base["base_charges"] * price_factor * rng.normal(1.0, 0.05, n)).round(2),
            "support_calls_30d": rng.poisson(2.6 if shifted else 1.2, n).astype("int64"),
            "usage_minutes_7d": (rng.gamma(4.0, 70.0, n) * (0.65 if shifted else 1.0)).round(1),
            "payment_delay_days": rng.exponential(3.0, n).round(1),
            "num_products": base["num_products"],
            "satisfaction_score": np.clip(base["satisfaction_base"] + rng.normal(0, 0.3, n), 1, 5).round(2),
            "contract_type": contract,
            "region": base["region"],
        }
    )
    if index == scenario.corrupt_day:
        broken = rng.random(n) < 0.4
        frame.loc[broken, "monthly_charges"] = np.nan
        frame.loc[rng.random(n) < 0.05, "tenure_months"] = -1
    return frame


def churn_probability(frame: pd.DataFrame, concept_shifted: bool) -> np.ndarray:
    """Ground truth: how likely each customer in a snapshot is to churn."""
    month_to_month = (frame["contract_type"] == CONTRACTS[0]).to_numpy(float)
    logit = (
        -1.6
        + 1.1 * month_to_month
        - 0.035 * frame["tenure_months"].to_numpy(float)
        + 0.45 * frame["support_calls_30d"].to_numpy(float)
        - 0.7 * (frame["satisfaction_score"].to_numpy(float) - 3.5)
        + 0.12 * frame["payment_delay_days"].to_numpy(float)
        - 0.002 * frame["usage_minutes_7d"].to_numpy(float)
    )
    if concept_shifted:
        # Customers now leave over price and unhappy support contacts stop predicting churn.
        logit = (
            -1.0
            + 0.035 * (np.nan_to_num(frame["monthly_charges"].to_numpy(float)) - 90.0)
            - 0.45 * frame["support_calls_30d"].to_numpy(float)
            + 0.9 * (frame["region"] == "south").to_numpy(float)
            - 0.02 * frame["tenure_months"].to_numpy(float)
        )
    return np.asarray(1.0 / (1.0 + np.exp(-logit)))


def labels_arriving(scenario: Scenario, index: int) -> pd.DataFrame:
    """Labels that land on day ``index``: the outcome of the snapshot ``label_delay_days`` earlier."""
    observed = index - scenario.label_delay_days
    if observed < 0:
        return pd.DataFrame(
            {
                "customer_id": pd.Series(dtype="int64"),
                "event_timestamp": pd.Series(dtype="datetime64[ns, UTC]"),
                "churned": pd.Series(dtype="int64"),
            }
        )
    frame = snapshot(scenario, observed)
    rng = np.random.default_rng([scenario.seed, 2, observed])
    probability = churn_probability(frame, observed >= scenario.concept_shift_day)
    return pd.DataFrame(
        {
            "customer_id": frame["customer_id"],
            "event_timestamp": frame["event_timestamp"],
            "churned": (rng.random(len(frame)) < probability).astype("int64"),
        }
    )


def write(scenario: Scenario, root: Path) -> list[Path]:
    """Write ``raw/customers`` and ``raw/labels`` daily partitions under ``root``; returns the files."""
    written = []
    for index in range(scenario.days):
        ds = scenario.day(index).isoformat()
        for name, frame in (("customers", snapshot(scenario, index)), ("labels", labels_arriving(scenario, index))):
            path = root / "raw" / name / f"date={ds}" / f"{name}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            frame.to_parquet(path, index=False)
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="data root; partitions go under OUT/raw/")
    parser.add_argument("--start", type=date.fromisoformat, default=Scenario.start)
    parser.add_argument("--days", type=int, default=Scenario.days)
    parser.add_argument("--customers", type=int, default=Scenario.customers)
    parser.add_argument("--seed", type=int, default=Scenario.seed)
    parser.add_argument("--corrupt-day", type=int, default=Scenario.corrupt_day, help="day index with bad data")
    parser.add_argument("--covariate-shift-day", type=int, default=Scenario.covariate_shift_day)
    parser.add_argument("--concept-shift-day", type=int, default=Scenario.concept_shift_day)
    args = parser.parse_args(argv)
    scenario = Scenario(
        start=args.start,
        days=args.days,
        customers=args.customers,
        seed=args.seed,
        corrupt_day=args.corrupt_day,
        covariate_shift_day=args.covariate_shift_day,
        concept_shift_day=args.concept_shift_day,
    )
    files = write(scenario, args.out)
    print(f"wrote {len(files)} partitions for {scenario.days} days from {scenario.start} to {args.out / 'raw'}")


if __name__ == "__main__":
    main()
