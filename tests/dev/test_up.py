"""``airflow-mlops up``: the embedded stack for a project's own DAGs, as a user starts it from the docs,
scheduled or paused, stopped by Ctrl+C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airflow_mlops.dev.stack import Api, answers
from tests.conftest import ROOT

pytestmark = pytest.mark.e2e

PORT = 18140


def test_up_runs_the_project_s_dags_scheduled_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLOPS"))}
    cli = Path(sys.executable).with_name("airflow-mlops")
    argv = [cli, "up", "--project", ROOT, "--home", tmp_path / "stack", "--port", str(PORT), "--schedule"]
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 400
        while not any(line.startswith("DAGs, scheduled:") for line in seen):
            assert process.poll() is None and time.monotonic() < deadline, "".join(seen)
            seen.append(process.stdout.readline())
        listed = next(line for line in seen if line.startswith("DAGs")).split(":", 1)[1].strip().split(", ")
        assert set(listed) >= {"churn_features", "churn_training", "churn_monitoring", "churn_rollback"}
        assert not Api(f"http://localhost:{PORT}").is_paused("churn_features")  # --schedule: the schedules run
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=120) in (0, 130)  # components get 30 s to stop, then SIGKILL
        assert not answers(f"http://localhost:{PORT}/api/v2/version")  # the components are gone
    finally:
        if process.poll() is None:  # SIGTERM: the CLI stops its components on the way out
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
