"""Run Airflow's own components as local processes and talk to them the way a user would:
the ``airflow`` CLI for backfills, the public REST API (``/api/v2``) for runs and their state.

Used by the demo and the end-to-end tests; every process writes its log under ``<home>/logs``.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
TERMINAL = {"success", "failed"}


class StackError(RuntimeError):
    pass


def airflow_bin() -> str:
    return str(Path(sys.executable).with_name("airflow"))


def process_env(env: Mapping[str, str]) -> dict[str, str]:
    """A stack's processes see its configuration only: Airflow settings and connections that the caller's
    environment holds (another stack's, a shell's) are left out, so they cannot leak into this stack."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
    return {**inherited, **env}


def airflow_cli(env: dict[str, str], *args: str, timeout: int = 300) -> str:
    completed = subprocess.run(
        [airflow_bin(), *args], env=process_env(env), capture_output=True, text=True, timeout=timeout
    )
    if completed.returncode != 0:
        raise StackError(f"airflow {' '.join(args)} failed ({completed.returncode}): {completed.stderr[-2000:]}")
    return completed.stdout


class Api:
    """A small client of Airflow's public REST API, authenticated like the UI (a JWT from /auth/token)."""

    def __init__(self, base_url: str, username: str = "admin", password: str = "admin"):
        self.base_url = base_url.rstrip("/")
        self.username, self.password = username, password
        self._token: str | None = None

    def _request(self, method: str, path: str, body: Any = None, auth: bool = True) -> Any:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.base_url}{path}", data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raise StackError(f"{method} {path}: HTTP {exc.code}: {exc.read().decode()[:1000]}") from exc
        return json.loads(payload) if payload else None

    def token(self) -> str:
        if self._token is None:
            reply = self._request(
                "POST", "/auth/token", {"username": self.username, "password": self.password}, auth=False
            )
            self._token = reply["access_token"]
        return self._token

    def healthy(self) -> bool:
        try:
            reply = self._request("GET", "/api/v2/monitor/health", auth=False)
        except (OSError, StackError):
            return False
        return all(reply.get(part, {}).get("status") == "healthy" for part in ("metadatabase", "scheduler"))

    def get(self, path: str) -> Any:
        return self._request("GET", path)

    def post(self, path: str, body: Any) -> Any:
        return self._request("POST", path, body)

    def patch(self, path: str, body: Any) -> Any:
        return self._request("PATCH", path, body)

    def dag_ids(self) -> set[str]:
        return {d["dag_id"] for d in self.get("/api/v2/dags?limit=100")["dags"]}

    def unpause(self, dag_id: str) -> None:
        self.patch(f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = self.get(f"/api/v2/dags/{dag_id}/dagRuns?limit=500&order_by=logical_date")[
            "dag_runs"
        ]
        return runs

    def backfill_running(self, dag_id: str) -> bool:
        """Whether a backfill of ``dag_id`` is not yet marked complete (Airflow allows one at a time)."""
        backfills = self.get(f"/api/v2/backfills?dag_id={dag_id}&limit=100")["backfills"]
        return any(b["completed_at"] is None for b in backfills)

    def trigger(self, dag_id: str, logical_date: str | None, conf: dict[str, Any]) -> str:
        body = {"logical_date": logical_date, "conf": conf}
        return str(self.post(f"/api/v2/dags/{dag_id}/dagRuns", body)["dag_run_id"])


def answers(url: str) -> bool:
    """Whether an HTTP service answers at ``url`` without a server error."""
    try:
        with urllib.request.urlopen(url, timeout=5):
            return True
    except urllib.error.HTTPError as error:  # urlopen raises for every status >= 400
        return error.code < 500
    except OSError:
        return False


def wait_for(condition: Callable[[], bool], what: str, timeout: float, interval: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise StackError(f"timed out after {timeout:.0f}s waiting for {what}")


def wait_for_runs(
    api: Api, dag_id: str, expected: int, timeout: float, progress: Callable[[str], None] = print
) -> list[dict[str, Any]]:
    """Until ``dag_id`` has at least ``expected`` runs and all of them are finished."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        runs = api.runs(dag_id)
        done = [r for r in runs if r["state"] in TERMINAL]
        line = f"{dag_id}: {len(done)}/{max(expected, len(runs))} runs finished"
        if line != last:
            progress(line)
            last = line
        if len(runs) >= expected and len(done) == len(runs):
            return runs
        time.sleep(3)
    raise StackError(f"timed out after {timeout:.0f}s waiting for {expected} runs of {dag_id}")


@dataclass(frozen=True)
class Component:
    """One long-running process: the name of its log, its command line, and environment on top of the stack's."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Deployment:
    """What a stack runs with: Airflow's environment (configuration and ``AIRFLOW_CONN_*`` connections, for
    every process and the CLI) and the processes beyond the four Airflow components (Celery workers)."""

    env: dict[str, str]
    workers: tuple[Component, ...] = ()
    needs: tuple[str, ...] = ()
    """URLs of services started beside the stack (the MLflow server) that must answer before it counts as up."""


class Supervised:
    """Processes started by :func:`supervised`; ``check()`` fails naming the first one that exited."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def check(self) -> bool:
        for name, process in self.processes.items():
            if process.poll() is not None:
                log = self.logs / f"{name}.log"
                tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
                raise StackError(f"{name} exited with {process.returncode}; {log} ends with:\n" + "\n".join(tail))
        return True


@contextmanager
def supervised(components: Sequence[Component], env: Mapping[str, str], logs: Path) -> Iterator[Supervised]:
    """Start each component in its own process group, logging to ``<logs>/<name>.log``; stop them all
    on the way out (SIGTERM, SIGKILL after 30 s), also when the caller gets SIGTERM (CI timeouts, ``kill``)."""
    logs.mkdir(parents=True, exist_ok=True)
    running = Supervised(logs)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        for component in components:
            with (logs / f"{component.name}.log").open("ab") as log:
                running.processes[component.name] = subprocess.Popen(
                    component.argv,
                    env=process_env({**env, **component.env}),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        yield running
    finally:
        signal.signal(signal.SIGTERM, previous)
        for process in running.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in running.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@contextmanager
def running_stack(
    env: dict[str, str],
    home: Path,
    keep: bool = False,
    workers: Sequence[Component] = (),
    needs: Sequence[str] = (),
) -> Iterator[Api]:
    """Start any ``workers`` (Celery workers, which need only the broker to start) while the metadata DB is
    migrated, then the four Airflow components; yield an API client once they are healthy and every URL
    in ``needs`` answers (services that started meanwhile)."""
    logs = home / "logs"
    with supervised(workers, env, logs) as running_workers:
        airflow_cli(env, "db", "migrate", timeout=600)
        database = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        if database.startswith("sqlite:///"):  # readers never block the writer in WAL mode
            with sqlite3.connect(database.removeprefix("sqlite:///")) as connection:
                connection.execute("PRAGMA journal_mode=WAL")
        components = [Component(name, (airflow_bin(), name)) for name in COMPONENTS]
        with supervised(components, env, logs) as running:
            api = Api(env["AIRFLOW__API__BASE_URL"])
            try:
                wait_for(
                    lambda: running.check() and running_workers.check() and api.healthy() and all(map(answers, needs)),
                    f"the Airflow API server and scheduler to be healthy, and {', '.join(needs) or 'nothing else'}",
                    timeout=240,
                )
                yield api
                if keep:
                    print("Stack running; press Ctrl+C to stop it.", flush=True)
                    while running.check() and running_workers.check():
                        time.sleep(1)
            except KeyboardInterrupt:
                pass
