"""Synthetic bike-share data for the rides example: a snapshot per station and day, and the next day's ride
count per station landing one day later, laid out as the pipeline reads them:

    <root>/raw/stations/date=YYYY-MM-DD/part-0.parquet        station_id, event_timestamp, features
    <root>/raw/station_rides/date=YYYY-MM-DD/part-0.parquet   station_id, event_timestamp, rides_next_day

Rides grow with the station's recent average and the temperature, and drop with rain and at weekends.
From ``heatwave_day`` on, temperatures are 12 degrees higher (a covariate shift monitoring should see).

    python rides_data.py ROOT [--first-day 2026-03-01] [--days 21] [--stations 80] [--heatwave-day 14]
"""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

DISTRICTS = ["centre", "harbour", "north", "south", "university"]
DISTRICT_FACTOR = {"centre": 1.4, "harbour": 1.1, "north": 0.8, "south": 0.9, "university": 1.2}


def write(
    root: Path,
    first_day: date = date(2026, 3, 1),
    days: int = 21,
    stations: int = 80,
    heatwave_day: int | None = None,
    seed: int = 7,
) -> list[date]:
    """Write ``days`` days of snapshots (and the counts of all but the last, which arrive after it)."""
    rng = np.random.default_rng(seed)
    ids = [f"st-{i:04d}" for i in range(1, stations + 1)]
    capacity = rng.integers(10, 60, stations).astype("int32")
    district = rng.choice(DISTRICTS, stations)
    popularity = rng.uniform(0.5, 1.5, stations) * np.array([DISTRICT_FACTOR[d] for d in district])
    recent = 30 * popularity
    written = []
    for index in range(days):
        ds = first_day + timedelta(days=index)
        tomorrow = ds + timedelta(days=1)
        heat = 12.0 if heatwave_day is not None and index >= heatwave_day else 0.0
        temperature = (rng.normal(14, 5, stations) + heat).astype("float32")
        rain = rng.random(stations) < 0.25
        weekend = np.full(stations, tomorrow.weekday() >= 5)
        stamp = pd.Timestamp(datetime.combine(ds, datetime.min.time(), UTC))
        snapshot = pd.DataFrame(
            {
                "station_id": ids,
                "event_timestamp": stamp,
                "capacity": capacity,
                "district": pd.Categorical(district, categories=DISTRICTS),
                "rides_7d_avg": np.round(recent, 2),
                "temperature_c": temperature,
                "rain_forecast": rain,
                "is_weekend": weekend,
            }
        )
        expected = (
            recent
            * (1 + 0.03 * (temperature.astype(float) - 14))
            * np.where(rain, 0.6, 1.0)
            * np.where(weekend, 0.8, 1.0)
            * (0.5 + capacity / 60)
        )
        rides = rng.poisson(np.clip(expected, 0.5, None)).astype(float)
        _write(root / "raw" / "stations" / f"date={ds}", snapshot)
        if index + 1 < days:  # counted tomorrow, landed the day after the snapshot
            labels = pd.DataFrame({"station_id": ids, "event_timestamp": stamp, "rides_next_day": rides})
            _write(root / "raw" / "station_rides" / f"date={tomorrow}", labels)
        recent = 0.85 * recent + 0.15 * rides
        written.append(ds)
    return written


def _write(folder: Path, frame: pd.DataFrame) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".part-0.parquet.tmp"  # dot files are ignored until renamed into place
    frame.to_parquet(tmp, index=False)
    tmp.replace(folder / "part-0.parquet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="the storage root (the mlops_storage connection's root)")
    parser.add_argument("--first-day", type=date.fromisoformat, default=date(2026, 3, 1))
    parser.add_argument("--days", type=int, default=21)
    parser.add_argument("--stations", type=int, default=80)
    parser.add_argument("--heatwave-day", type=int, default=None, help="index of the first hotter day")
    args = parser.parse_args()
    days = write(args.root, args.first_day, args.days, args.stations, args.heatwave_day)
    print(f"wrote {len(days)} days ({days[0]} to {days[-1]}) under {args.root}")


if __name__ == "__main__":
    main()
