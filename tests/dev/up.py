"""``airflow-mlops up`` as a user runs it, for the tests that drive a stack through it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from airflow_mlops.dev.stack import wait_for


@contextmanager
def airflow_mlops_up(project: Path, home: Path, port: int, *args: str | Path) -> Iterator[list[str]]:
    """Start ``airflow-mlops up`` for ``project`` from a clean environment (no Airflow settings of the
    caller's), wait until it lists the DAGs, yield what it printed so far (and goes on printing), then stop
    it with Ctrl+C as a user does."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLOPS"))}
    cli = Path(sys.executable).with_name("airflow-mlops")
    argv = [cli, "up", "--project", project, "--home", home, "--port", str(port), *args]
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: list[str] = []

    def read() -> None:  # all it prints, to the end: a full pipe would block the CLI (and its shutdown)
        assert process.stdout is not None
        for line in process.stdout:
            seen.append(line)

    threading.Thread(target=read, daemon=True).start()

    def listed() -> bool:
        assert process.poll() is None, "".join(seen)
        return any(line.startswith("DAGs, ") for line in seen)

    try:
        wait_for(listed, "airflow-mlops up to list the DAGs", timeout=400, interval=0.5)
        yield seen
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=120) in (0, 130), "".join(seen)  # components get 30 s, then SIGKILL
    finally:
        if process.poll() is None:  # SIGTERM: the CLI stops its components on the way out
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
