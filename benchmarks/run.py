"""Every performance target of the distribution in one table: ours and the library default side by
side, in one run, each side in its own process.

    python benchmarks/run.py            # default cases, a few minutes on 2 cores
    python benchmarks/run.py --large    # adds drift on 10M rows and the training pipeline on 1M rows

Cases: DAG parse time (``airflow dags report``); ``airflow-mlops ci`` on the churn project against
its 3-minute target; the drift decision against Evidently's
``DataDriftPreset``; materialisation into Feast's SQLite and Redis online stores against Feast's
``materialize``; online predictions (latency and throughput) against Feast's SDK plus MLflow's scoring
server, in a second table; with ``--large``, the training pipeline through Airflow against the same steps in one
plain Python process. The torch trainer's CPU vs GPU time is ``benchmarks/torch_trainer.py`` (it needs
a GPU machine).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ci
import drift
import materialize
import parse
import pipeline
import serving
from harness import Row, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--large", action="store_true", help="add the 10M-row drift and 1M-row pipeline cases")
    parser.add_argument("--drift-rows", type=int, default=1_000_000)
    parser.add_argument("--materialize-rows", type=int, default=100_000)
    args = parser.parse_args()

    started = time.monotonic()
    rows: list[Row] = [*parse.run(), *ci.run(), *drift.run(args.drift_rows)]
    for store in ("sqlite", "redis"):
        rows.append(Row(**materialize.run(args.materialize_rows, 10, store)))
    if args.large:
        rows += drift.run(10_000_000, baseline="stattests")
        rows.append(Row(**materialize.run(1_000_000, 10, "sqlite")))
        rows += pipeline.run(customers=48_000)
    online = serving.table([serving.run(10_000, store, 1000) for store in ("sqlite", "redis")])
    print(
        f"{date.today()} · {platform.python_implementation()} {platform.python_version()} · "
        f"{os.cpu_count()} CPUs · {time.monotonic() - started:.0f} s in all\n"
    )
    print(table(rows))
    print("\nonline predictions (benchmarks/serving.py):\n")
    print(online)


if __name__ == "__main__":
    main()
