"""``airflow-mlops ci`` on this repository's churn project, as a CI job runs it (specs, DAG files and the
churn pipeline end to end on a synthesised sample), against its target: at most 3 minutes for one
pipeline on 2 cores, a step users wait for on every push. There is no library default to run beside it;
the agreement column says whether every check passed and how the time splits.

    python benchmarks/ci.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Row, table

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 180.0


def run() -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="bench-ci-") as tmp:
        junit = Path(tmp) / "ci.xml"
        started = time.perf_counter()
        command = [str(Path(sys.executable).with_name("airflow-mlops")), "ci", str(PROJECT_ROOT)]
        command += ["--junit", str(junit), "--log", str(Path(tmp) / "run.log")]
        done = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if not junit.exists():
            raise RuntimeError(
                f"airflow-mlops ci failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
            )
        suites = ET.parse(junit).getroot()
    tests, failures = int(suites.get("tests", "0")), int(suites.get("failures", "0"))
    static = sum(float(s.get("time", "0")) for s in suites if s.get("name") in ("specs", "dags"))
    verdict = "met" if seconds <= TARGET_S else "MISSED"
    split = f"specs and DAG files {static:.0f} s, churn end to end {seconds - static:.0f} s"
    agreement = f"{tests - failures}/{tests} checks passed; target <= {TARGET_S:.0f} s {verdict}; {split}"
    return [Row("airflow-mlops ci: churn project (1 pipeline)", "8 days x 250", seconds, None, None, None, agreement)]


if __name__ == "__main__":
    print(table(run()))
