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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_client.client import ApiClient

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
TERMINAL = {"success", "failed"}
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


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
    """A client of Airflow's public REST API (``/api/v2``), through the official ``apache-airflow-client``,
    authenticated like the UI: a JWT from ``POST /auth/token``. The client (about a second to import) is
    loaded on first use; every error the API answers raises :class:`StackError` with its status and body."""

    TIMEOUT = 30.0

    def __init__(self, base_url: str, username: str = "admin", password: str = "admin"):
        self.base_url = base_url.rstrip("/")
        self.username, self.password = username, password
        self._client: ApiClient | None = None

    @property
    def client(self) -> ApiClient:
        if self._client is None:
            from airflow_client.client import ApiClient, Configuration

            # no retries inside the client: callers poll (wait_for) and say what they waited for
            self._client = ApiClient(Configuration(host=self.base_url, retries=0))
        return self._client

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        import urllib3
        from airflow_client.client.exceptions import ApiException

        try:
            yield
        except ApiException as exc:
            raise StackError(f"{what}: HTTP {exc.status}: {(exc.body or exc.reason or '')[:1000]}") from exc
        except urllib3.exceptions.HTTPError as exc:  # no answer: refused, reset, timed out
            raise StackError(f"{what}: {exc}") from exc

    def _authorized(self) -> ApiClient:
        self.token()
        return self.client

    def token(self) -> str:
        """The JWT the calls carry; the client has no call for ``/auth/token`` (its ``login`` is the UI's
        redirect), so this one request goes through the client's transport without a generated method."""
        configuration = self.client.configuration
        if configuration.access_token is None:
            body = {"username": self.username, "password": self.password}
            with self._errors("POST /auth/token"):
                request = self.client.param_serialize("POST", "/auth/token", header_params=JSON_HEADERS, body=body)
                response = self.client.call_api(*request, _request_timeout=self.TIMEOUT)
                response.read()
                reply: Any = self.client.response_deserialize(response, {"2XX": "object"}).data
            configuration.access_token = str(reply["access_token"])
        return str(configuration.access_token)

    def healthy(self) -> bool:
        from airflow_client.client import MonitorApi

        try:
            with self._errors("GET /api/v2/monitor/health"):
                health = MonitorApi(self.client).get_health(_request_timeout=self.TIMEOUT)
        except (StackError, ValueError):  # down, starting, or not yet answering a health report
            return False
        return health.metadatabase.status == "healthy" and health.scheduler.status == "healthy"

    def dag_ids(self) -> set[str]:
        from airflow_client.client import DAGApi

        with self._errors("GET /api/v2/dags"):
            dags = DAGApi(self._authorized()).get_dags(limit=100, _request_timeout=self.TIMEOUT).dags
        return {dag.dag_id for dag in dags}

    def unpause(self, dag_id: str) -> None:
        self.set_paused(dag_id, False)

    def is_paused(self, dag_id: str) -> bool:
        from airflow_client.client import DAGApi

        with self._errors(f"GET /api/v2/dags/{dag_id}"):
            return bool(DAGApi(self._authorized()).get_dag(dag_id, _request_timeout=self.TIMEOUT).is_paused)

    def set_paused(self, dag_id: str, paused: bool) -> None:
        from airflow_client.client import DAGApi, DAGPatchBody

        with self._errors(f"PATCH /api/v2/dags/{dag_id}"):
            DAGApi(self._authorized()).patch_dag(dag_id, DAGPatchBody(is_paused=paused), _request_timeout=self.TIMEOUT)

    def bundle_version(self, dag_id: str) -> str | None:
        """The version of its DAG bundle (a commit for a GitDagBundle) that a DAG was last parsed from."""
        from airflow_client.client import DAGApi

        with self._errors(f"GET /api/v2/dags/{dag_id}/details"):
            details = DAGApi(self._authorized()).get_dag_details(dag_id, _request_timeout=self.TIMEOUT)
        return details.bundle_version

    def count_runs(self, dag_id: str, state: str, bundle_version: str) -> int:
        """How many runs of ``dag_id`` in ``state`` ran ``bundle_version`` (filtered by the server: no page
        limit in the way); 0 for a DAG the environment does not know."""
        from airflow_client.client import DagRunApi
        from airflow_client.client.exceptions import NotFoundException

        try:
            with self._errors(f"GET /api/v2/dags/{dag_id}/dagRuns?bundle_version={bundle_version}"):
                reply = DagRunApi(self._authorized()).get_dag_runs(
                    dag_id, state=[state], bundle_version=bundle_version, limit=1, _request_timeout=self.TIMEOUT
                )
        except StackError as exc:
            if isinstance(exc.__cause__, NotFoundException):
                return 0
            raise
        return reply.total_entries or 0

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        """Up to 500 runs of ``dag_id`` by logical date, each as the API's JSON object (ISO 8601 dates)."""
        from airflow_client.client import DagRunApi

        with self._errors(f"GET /api/v2/dags/{dag_id}/dagRuns"):
            reply = DagRunApi(self._authorized()).get_dag_runs(
                dag_id, limit=500, order_by=["logical_date"], _request_timeout=self.TIMEOUT
            )
        return [run.model_dump(mode="json") for run in reply.dag_runs]

    def backfill_running(self, dag_id: str) -> bool:
        """Whether a backfill of ``dag_id`` is not yet marked complete (Airflow allows one at a time)."""
        from airflow_client.client import BackfillApi

        with self._errors(f"GET /api/v2/backfills?dag_id={dag_id}"):
            reply = BackfillApi(self._authorized()).list_backfills(dag_id, limit=100, _request_timeout=self.TIMEOUT)
        return any(backfill.completed_at is None for backfill in reply.backfills)

    def trigger(self, dag_id: str, logical_date: str | None, conf: dict[str, Any]) -> str:
        from airflow_client.client import DagRunApi, TriggerDAGRunPostBody

        body = TriggerDAGRunPostBody.model_validate({"logical_date": logical_date, "conf": conf})
        with self._errors(f"POST /api/v2/dags/{dag_id}/dagRuns"):
            run = DagRunApi(self._authorized()).trigger_dag_run(dag_id, body, _request_timeout=self.TIMEOUT)
        return run.dag_run_id

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        """One task instance as the API's JSON object (``id``, ``state``, ``try_number``, ...)."""
        from airflow_client.client import TaskInstanceApi

        with self._errors(f"GET /api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"):
            instance = TaskInstanceApi(self._authorized()).get_task_instance(
                dag_id, run_id, task_id, _request_timeout=self.TIMEOUT
            )
        return instance.model_dump(mode="json")

    def links(self, dag_id: str, run_id: str, task_id: str) -> dict[str, str | None]:
        """A task instance's extra links by name; ``None`` where the link has no URL. Read as JSON: the
        client's model has only strings there and fails on the ``null`` Airflow answers for those."""
        from airflow_client.client import TaskInstanceApi

        what = f"GET /api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/links"
        with self._errors(what):
            response = TaskInstanceApi(self._authorized()).get_extra_links_without_preload_content(
                dag_id, run_id, task_id, _request_timeout=self.TIMEOUT
            )
        body = response.data.decode()
        if not 200 <= response.status < 300:
            raise StackError(f"{what}: HTTP {response.status}: {body[:1000]}")
        links: dict[str, str | None] = json.loads(body)["extra_links"]
        return links


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
    on the way out (SIGTERM, SIGKILL to those still running 30 s later), also when the caller gets SIGTERM
    (CI timeouts, ``kill``)."""
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
        deadline = time.monotonic() + 30  # one grace period for all of them, not 30 s each
        for process in running.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
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
