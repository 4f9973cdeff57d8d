"""DAG parse time as Airflow measures it (``airflow dags report``): every file in ``dags/``, against
the same file with the ML libraries imported at the top, the way DAG files are often written.

    python benchmarks/parse.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Row, table

from airflow_mlops.dev.embedded import embedded_env

PROJECT_ROOT = Path(__file__).resolve().parents[1]

EAGER_IMPORTS = "import evidently, feast, great_expectations, mlflow, sklearn, torch  # noqa: F401\n"


def airflow(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), *args], env=env, capture_output=True, text=True,
        check=False, timeout=600,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"airflow {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def dags_report(dags: Path, home: Path) -> dict[str, tuple[float, str]]:
    """Seconds and DAG ids per DAG file, from ``airflow dags report`` run against ``dags``."""
    env = {
        **os.environ,
        **embedded_env(home, project=PROJECT_ROOT, api_port=18990),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
    }
    if not (home / "airflow" / "airflow.db").exists():
        airflow(env, "db", "migrate")
    output = airflow(env, "dags", "report", "-o", "json")
    entries = json.loads(output.strip().splitlines()[-1])  # after any warnings
    return {Path(e["file"]).name: (_seconds(e["duration"]), e["dags"]) for e in entries}


def _seconds(duration: str) -> float:
    hours, minutes, seconds = duration.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def run() -> list[Row]:
    files = sorted((PROJECT_ROOT / "dags").glob("*.py"))
    with tempfile.TemporaryDirectory(prefix="bench-parse-") as tmp:
        eager = Path(tmp) / "dags"
        eager.mkdir()
        for file in files:
            source = file.read_text().replace("__file__", repr(str(file)))
            (eager / file.name).write_text(EAGER_IMPORTS + source)
        ours = dags_report(PROJECT_ROOT / "dags", Path(tmp) / "home")
        base = dags_report(eager, Path(tmp) / "home")
    return [
        Row(f"DAG parse: dags/{name}", "—", ours[name][0], None, base[name][0], None,
            f"same DAGs: {ours[name][1]}" if ours[name][1] == base[name][1] else "DIFFERENT DAGs")
        for name in sorted(ours)
    ]  # fmt: skip


if __name__ == "__main__":
    print(table(run()))
