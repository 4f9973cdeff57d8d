"""Hyperparameter search over Celery workers: one round of trials (one dynamically mapped task per trial,
on the spec's ``trials`` queue) served by two workers against one, on the production topology run as
local processes (CeleryExecutor, PostgreSQL, Redis, moto's S3, the MLflow server).

    python benchmarks/search.py --customers 80000 --trials 8

Each case gets a topology of its own (fresh databases, bucket and MLflow store), lands the same churn demo
data (``customers`` rows a day, 25 days, no corrupt day and no drift), publishes every day's offline
features, then triggers ``churn_training`` once: ``search.plan_round_1``, the trials, ``search.pick_best``,
then ``train_model`` and the gates as without a search. The spec is the churn demo's with
``training.search`` (random sampler, seed 0, ``parallel`` = ``trials``: a single round) and
``model.params: {max_iter: 300, early_stopping: false}``, so that every trial boosts ``max_iter`` rounds
(with early stopping a trial's cost depends on its draw: that measures the draw, not the workers).

* baseline: one Celery worker on the ``trials`` queue, ``--concurrency 1``;
* ours: two such workers (each its own ``--celery-hostname`` and log server port).

The non-trial tasks run on a ``default``-queue worker (``--concurrency 1``) that is the same in both cases.
The trial workers run with ``OMP_NUM_THREADS=1`` (and OpenBLAS's and MKL's the same): one trial, one core,
the way one sizes a worker's slots to its cores in production. On a 2-core machine the two trial slots
take both cores, which Airflow's scheduler, API server, DAG processor, the MLflow and S3 servers,
PostgreSQL and Redis share with them; with one slot they have a core to themselves.

Times come from the task instances as the REST API reports them: the search is the first trial's start to
the last trial's end; the speed-up is the baseline's search time over ours. The sum of the trial tasks'
durations and of their nested MLflow runs' (the fit and its scoring, without the task's start-up) show
what two workers cost each trial; the DAG run is queued to finished. Both cases must pick the same best
trial and get the same metric for every trial (same seed, same data). The notes under the table say, per
case, which worker ran which trial and how long each held its worker's slot (Airflow's supervisor's
``Workload finished`` lines in ``celery-worker-*.log``), and how many cores this benchmark, PostgreSQL and
Redis, and the machine's other processes used during the search: a case that other processes disturbed
(over 0.2 cores) is flagged, since the two-worker case has no core to spare for them.
PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) must be running (``scripts/production.sh``); the
stacks use ports 18940-18957.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Row, shape, table

from airflow_mlops.dev.demo import Plan, environment, land
from airflow_mlops.dev.production import celery_worker, local_production
from airflow_mlops.dev.stack import Api, running_stack, wait_for, wait_for_runs
from airflow_mlops.spec import PipelineSpec, load_spec

ROOT = Path(__file__).resolve().parents[1]
SPEC = Path("include/pipelines/churn.yaml")
API_PORTS = {1: 18940, 2: 18950}  # per case, and the next 7: log servers, S3 (+4), MLflow (+5), trial workers
ONE_CORE = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
SPACE = {
    "learning_rate": {"type": "float", "low": 0.01, "high": 0.3, "log": True},
    "max_leaf_nodes": {"type": "int", "low": 8, "high": 64},
    "l2_regularization": {"type": "float", "low": 0.0, "high": 1.0},
}
TARGET = 1.6  # one worker's search time over two workers'
BUSY = 0.2  # cores other processes may use during a search before the numbers are flagged as disturbed
TRIALS_TASK = "search.trials_round_"


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Whatever this process and its children print (the data generator, Airflow's and Feast's logs) goes
    to stderr while the cases run: stdout is the table's."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


@dataclass(frozen=True)
class Trial:
    number: int
    params: dict[str, Any]
    value: float
    queued: datetime | None
    start: datetime
    end: datetime
    run_seconds: float | None  # its nested MLflow run's span: the fit and its scoring
    worker: str  # the Celery worker that ran it
    held_seconds: float | None  # how long it held the worker's slot: task process start-up, run, exit

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True)
class Outcome:
    workers: int
    trials: list[Trial]
    best: dict[str, Any]
    dag_run_s: float
    train_rows: int  # each trial's
    cores: dict[str, float]  # used on average during the search, per kind (see CpuMeter)

    @property
    def search_s(self) -> float:
        start, end = self.search_window()
        return (end - start).total_seconds()

    @property
    def trials_s(self) -> float:
        return sum(t.seconds for t in self.trials)

    @property
    def runs_s(self) -> float | None:
        spans = [t.run_seconds for t in self.trials]
        return None if any(s is None for s in spans) else sum(s for s in spans if s is not None)

    def gaps(self) -> list[float]:
        """Seconds between one trial's end and the next one's start on the same worker."""
        gaps: list[float] = []
        for worker in {t.worker for t in self.trials}:
            mine = sorted((t for t in self.trials if t.worker == worker), key=lambda t: t.start)
            gaps += [(b.start - a.end).total_seconds() for a, b in itertools.pairwise(mine)]
        return gaps

    def note(self) -> str:
        workers = sorted({t.worker for t in self.trials})
        first = min(self.trials, key=lambda t: t.start)
        wait = (first.start - first.queued).total_seconds() if first.queued else float("nan")
        durations = [t.seconds for t in self.trials]
        outside = [t.seconds - t.run_seconds for t in self.trials if t.run_seconds is not None]
        held = [t.held_seconds - t.seconds for t in self.trials if t.held_seconds is not None]
        gaps = self.gaps()
        return (
            f"{self.workers} worker(s): trials per worker "
            f"{', '.join(f'{w} {sum(t.worker == w for t in self.trials)}' for w in workers)}; "
            f"trial task {min(durations):.1f}-{max(durations):.1f} s, mean {statistics.mean(durations):.1f} s "
            f"(of which {mean(outside):.1f} s outside its MLflow run); worker slot held {mean(held):.1f} s "
            f"(at most {max(held, default=float('nan')):.1f} s) longer than the task ran (task process start-up "
            f"and exit); consecutive trials on a worker "
            f"{mean(gaps):.1f} s apart; first trial queued -> started {wait:.1f} s; cores used during the "
            f"search: this benchmark {self.cores['ours']:.2f}, PostgreSQL and Redis {self.cores['shared']:.2f}, "
            f"other processes on the machine {self.cores['others']:.2f}"
        )

    def search_window(self) -> tuple[datetime, datetime]:
        return min(t.start for t in self.trials), max(t.end for t in self.trials)


SHARED = ("postgres", "redis-server")  # the shared servers: this benchmark's load and anyone else's
KINDS = ("ours", "shared", "others")


class CpuMeter:
    """Every process's CPU time, sampled twice a second in a thread, attributed to this benchmark (this
    process and its descendants: the stack, workers and tasks), the shared PostgreSQL and Redis servers, or
    anything else on the machine, so that a case can say who used the cores while its trials ran (a process
    that lives less than a sample is missed)."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.samples: list[tuple[float, dict[str, float]]] = []  # (epoch seconds, cumulative CPU s per kind)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CpuMeter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psutil

        started, me = time.time(), os.getpid()
        seen: dict[tuple[int, float], float] = {}
        totals = dict.fromkeys(KINDS, 0.0)
        while not self._stop.is_set():
            processes = [p.info for p in psutil.process_iter(["pid", "ppid", "name", "cpu_times", "create_time"])]
            children: dict[int, list[int]] = {}
            for info in processes:
                children.setdefault(info["ppid"], []).append(info["pid"])
            ours, stack = set(), [me]
            while stack:
                pid = stack.pop()
                ours.add(pid)
                stack += children.get(pid, [])
            for info in processes:
                if info["cpu_times"] is None:  # gone, or not ours to read
                    continue
                key = (info["pid"], info["create_time"])
                cpu = info["cpu_times"].user + info["cpu_times"].system
                before = seen.get(key, 0.0 if info["create_time"] >= started else cpu)
                kind = "ours" if info["pid"] in ours else "shared" if info["name"] in SHARED else "others"
                totals[kind] += cpu - before
                seen[key] = cpu
            self.samples.append((time.time(), dict(totals)))
            self._stop.wait(self.interval)

    def cores(self, start: datetime, end: datetime) -> dict[str, float]:
        """Cores used on average from ``start`` to ``end``, per kind."""
        inside = [(t, used) for t, used in self.samples if start.timestamp() <= t <= end.timestamp()]
        if len(inside) < 2:
            return dict.fromkeys(KINDS, float("nan"))
        (t0, first), (t1, last) = inside[0], inside[-1]
        return {kind: (last[kind] - first[kind]) / (t1 - t0) for kind in KINDS}


def mean(values: list[float]) -> float:
    return statistics.mean(values) if values else float("nan")


FINISHED = re.compile(r"Workload finished .*?duration=([0-9.]+).*?workload_id=([0-9a-f-]+)")


def worker_slots(logs: Path) -> dict[str, tuple[str, float]]:
    """Per task instance id, the Celery worker that ran it and how long it held a slot there (the duration
    Airflow's supervisor logs in ``<home>/logs/celery-worker-<name>.log``)."""
    slots = {}
    for log in logs.glob("celery-worker-*.log"):
        worker = log.stem.removeprefix("celery-worker-")
        for found in FINISHED.finditer(log.read_text(errors="replace")):
            slots[found.group(2)] = (worker, float(found.group(1)))
    return slots


def project_with_search(root: Path, trials: int, max_iter: int, sampler: str) -> Path:
    """The repository's DAGs and specs, the churn spec given a one-round search on the ``trials`` queue."""
    shutil.copytree(ROOT / "dags", root / "dags")
    shutil.copytree(ROOT / "include", root / "include")
    (root / "plugins").symlink_to(ROOT / "plugins")
    path = root / SPEC
    document = yaml.safe_load(path.read_text())
    training = document["training"]
    training["model"]["params"] = {"max_iter": max_iter, "early_stopping": False}
    training["search"] = {
        "space": SPACE,
        "trials": trials,
        "parallel": trials,
        "sampler": sampler,
        "seed": 0,
        "validation_days": 3,
        "queue": "trials",
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    load_spec(path)  # fails here, not in the DAG processor, if the spec does not validate
    return root


def publish(spec: PipelineSpec, customers: int, scratch: Path, project: Path) -> date:
    """Land raw data and labels on the lake, publish every day's offline features, apply the Feast
    definitions (as ``benchmarks/pipeline.py`` does, against this environment's S3 lake and Feast registry).
    Returns the ``as_of`` date whose training window is full."""
    sys.path.insert(0, str(project / "include" / "demo"))
    import churn_data

    from airflow_mlops.hooks import FeastHook, LakeHook
    from airflow_mlops.keys import raw_partition
    from airflow_mlops.steps import features
    from airflow_mlops.storage import read_partition

    days = spec.training.window_days + churn_data.Scenario.label_delay_days + 1
    # every day a training day: the corrupt day and the shifts fall after the last day landed
    plan = Plan(days=days, customers=customers, first_training_day=days, corrupt_day=days)
    lake = LakeHook().get_conn()
    land(plan, spec, lake, scratch, project)
    for index in range(days):
        day = spec.start_date + timedelta(days=index)
        features.write_offline(lake, spec, day, read_partition(lake, raw_partition(spec, day)))
    features.apply(FeastHook().get_conn().store(), spec, lake)
    return spec.start_date + timedelta(days=days - 1)


def task_instances(api: Api, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    from airflow_client.client import TaskInstanceApi

    api.token()
    reply = TaskInstanceApi(api.client).get_task_instances(dag_id, run_id, limit=1000, _request_timeout=api.TIMEOUT)
    return [instance.model_dump(mode="json") for instance in reply.task_instances]


def xcom(api: Api, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
    from airflow_client.client import XComApi

    api.token()
    entry = XComApi(api.client).get_xcom_entry(
        dag_id, task_id, run_id, "return_value", map_index=map_index, deserialize=True, stringify=False,
        _request_timeout=api.TIMEOUT,
    )  # fmt: skip
    return entry.actual_instance.value  # type: ignore[union-attr]


def moment(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def trial_run(client: Any, run_id: str) -> tuple[float | None, int]:
    """A trial's nested MLflow run: its span in seconds (the fit and its scoring) and its training rows."""
    run = client.get_run(run_id)
    span = None if run.info.end_time is None else (run.info.end_time - run.info.start_time) / 1000
    return span, int(run.data.params["train_rows"])


def case(work: Path, project: Path, customers: int, workers: int, timeout: float) -> Outcome:
    """One topology with ``workers`` single-slot trial workers: land the data, run the training DAG once."""
    from airflow_mlops.hooks import MlflowHook

    spec = load_spec(project / SPEC)
    assert spec.training.search is not None and spec.training.trials_queue is not None
    dag_id = spec.dag_id("training")
    api_port = API_PORTS[workers]
    home = work / f"{workers}-worker"
    with local_production(home, api_port, project) as (topology, deployment):
        env = {**deployment.env, "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"}
        processes = [
            celery_worker("default", "default", 1, api_port + 1),
            *(
                celery_worker(f"trials{i}", spec.training.trials_queue, 1, api_port + 5 + i, ONE_CORE)
                for i in range(1, workers + 1)
            ),
        ]
        with environment(env):
            say(f"{workers} worker(s): landing {customers} customers a day on {topology.lake}")
            as_of = publish(spec, customers, home / "landing", project)
            say(f"{workers} worker(s): starting Airflow with {', '.join(p.name for p in processes)}")
            with running_stack(env, home, workers=processes, needs=deployment.needs) as api, CpuMeter() as meter:
                wait_for(lambda: dag_id in api.dag_ids(), "the DAGs to be parsed", timeout=300)
                api.unpause(dag_id)
                api.trigger(dag_id, f"{as_of}T00:00:00Z", {"as_of": as_of.isoformat(), "reason": "benchmark"})
                (run,) = wait_for_runs(api, dag_id, 1, timeout=timeout, progress=say)
                found = outcome(api, MlflowHook().get_conn().client(), spec, run, workers, home)
    return replace(found, cores=meter.cores(*found.search_window()))


def outcome(api: Api, client: Any, spec: PipelineSpec, run: dict[str, Any], workers: int, home: Path) -> Outcome:
    """The finished run's trials (task instances, their results, their MLflow runs) and best params."""
    dag_id, run_id = spec.dag_id("training"), run["dag_run_id"]
    instances = task_instances(api, dag_id, run_id)
    if run["state"] != "success":
        failed = [f"{i['task_id']}[{i['map_index']}] {i['state']}" for i in instances if i["state"] != "success"]
        raise RuntimeError(
            f"{dag_id} run {run_id} ended {run['state']} ({', '.join(failed)}); "
            f"task logs under {home}/airflow/logs, processes' under {home}/logs"
        )
    slots = worker_slots(home / "logs")
    trials, rows = [], set()
    for instance in instances:
        if not instance["task_id"].startswith(TRIALS_TASK):
            continue
        result = xcom(api, dag_id, run_id, instance["task_id"], instance["map_index"])
        span, train_rows = trial_run(client, result["run_id"])
        rows.add(train_rows)
        trials.append(
            Trial(
                number=int(result["number"]),
                params=dict(result["params"]),
                value=float(result["value"]),
                queued=moment(instance["queued_when"]) if instance["queued_when"] else None,
                start=moment(instance["start_date"]),
                end=moment(instance["end_date"]),
                run_seconds=span,
                worker=slots.get(instance["id"], ("?", 0.0))[0],
                held_seconds=slots[instance["id"]][1] if instance["id"] in slots else None,
            )
        )
    expected = spec.training.search.trials if spec.training.search else 0
    if len(trials) != expected:
        raise RuntimeError(f"expected {expected} trial tasks ({TRIALS_TASK}*), run {run_id} had {len(trials)}")
    best = dict(xcom(api, dag_id, run_id, "search.pick_best"))
    seconds = (moment(run["end_date"]) - moment(run["queued_at"])).total_seconds()
    return Outcome(workers, sorted(trials, key=lambda t: t.number), best, seconds, max(rows), {})


def agreement(ours: Outcome, base: Outcome) -> tuple[str, str]:
    """Whether both cases chose the same best params, and whether every trial scored the same."""
    same_best = ours.best["params"] == base.best["params"] and ours.best["trial"] == base.best["trial"]
    params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in ours.best["params"].items())
    best = (
        f"{'same' if same_best else 'DIFFERENT'} best: trial {ours.best['trial']} ({params}), "
        f"{ours.best['metric']} {ours.best['value']:.4f} vs {base.best['value']:.4f}"
    )
    pairs = [
        (a, b)
        for a in ours.trials
        for b in base.trials
        if a.number == b.number and a.params == b.params and abs(a.value - b.value) < 1e-9
    ]
    same = len(pairs) == len(ours.trials) == len(base.trials)
    trials = (
        f"{'same' if same else 'DIFFERENT'} trials: {len(pairs)} of {len(ours.trials)} with equal params and metric"
    )
    return best, trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=80_000, help="rows per day (25 days landed)")
    parser.add_argument("--trials", type=int, default=8, help="trials, all in one round")
    parser.add_argument("--max-iter", type=int, default=300, help="boosting rounds of every trial")
    parser.add_argument("--sampler", choices=["random", "tpe"], default="random")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for each DAG run")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs) after a success too")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-search-"))
    failed = True
    try:
        with stdout_to_stderr():
            project = project_with_search(work / "project", args.trials, args.max_iter, args.sampler)
            base = case(work, project, args.customers, 1, args.timeout)
            say(f"one worker: search {base.search_s:.1f} s")
            ours = case(work, project, args.customers, 2, args.timeout)
            say(f"two workers: search {ours.search_s:.1f} s")
        failed = False
    finally:
        if failed or args.keep:
            say(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    best, trials = agreement(ours, base)
    size = shape(ours.train_rows, 9)
    label = f"{args.trials} trials x {args.max_iter} rounds"
    speedup = base.search_s / ours.search_s
    print(f"target: two workers' search >= {TARGET}x faster than one's; got {speedup:.2f}x "
          f"({'met' if speedup >= TARGET else 'NOT met'})\n")  # fmt: skip
    print(
        table(
            [
                Row(f"search: {label}, first trial start -> last trial end", size, ours.search_s, None,
                    base.search_s, None, best),
                Row("search: trial tasks, sum of durations", size, ours.trials_s, None, base.trials_s, None, trials),
                Row("search: trials' MLflow runs (fit + scoring), sum", size, ours.runs_s or 0.0, None,
                    base.runs_s, None, ""),
                Row("training DAG run, queued -> finished", size, ours.dag_run_s, None, base.dag_run_s, None, ""),
            ]
        )
    )  # fmt: skip
    print(
        "\nours: two trial workers, baseline: one; each --concurrency 1 with OMP_NUM_THREADS=1 (one core per "
        f"trial slot), on {os.cpu_count()} cores. rows x cols: each trial's training rows.\n"
        f"{base.note()}\n{ours.note()}"
    )
    for result in (base, ours):
        if result.cores["others"] > BUSY:
            others = result.cores["others"]
            print(f"\nWARNING: other processes used {others:.2f} cores during the {result.workers}-worker "
                  "search: the machine was not quiet, these numbers are disturbed")  # fmt: skip


if __name__ == "__main__":
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    main()
