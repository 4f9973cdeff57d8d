"""Online predictions: ``airflow-mlops serve`` against what one assembles by hand without it, Feast's SDK
read in the client plus MLflow's own scoring server (``mlflow models serve``), on SQLite and Redis.

    python benchmarks/serving.py --customers 10000 --stores sqlite redis

Both sides serve the same ``@champion`` (the churn spec's gradient boosting, trained on the demo data)
over the same online store, materialised from one day of ``customers`` snapshots. Each server is its own
process with one worker; the client keeps its HTTP connection alive. Latency is end to end as a caller
sees it (ids in, scores out) over ``requests`` sequential calls; throughput is single-id calls per second
from ``clients`` threads (default 16) against the one worker; on a 2-core machine the client threads take
one core, so the server gets the other. The server's own capacity is measured apart with ``wrk`` (a C load
generator, Debian's ``wrk`` package; the column is empty without it), which leaves the cores to the
server: ``GET /predict/<id>`` for random ids over 16 connections for 10 s. Agreement compares the two
sides' scores for 100 ids.
Redis runs against 127.0.0.1:6379 db 14, flushed first.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "include" / "pipelines" / "churn.yaml"
sys.path.insert(0, str(ROOT / "include" / "demo"))
REDIS = "127.0.0.1:6379,db=14"
OURS_PORT, BASE_PORT = 18151, 18152
TARGETS = {"single id p99": "<= 20 ms on Redis", "throughput": ">= 500 req/s per worker"}


def prepare(work: Path, customers: int, store_kind: str) -> dict[str, str]:
    """Publish one day, materialise it, register and promote a model; the connections, as environment."""
    import churn_data

    from airflow_mlops.spec import load_spec
    from airflow_mlops.steps import features, registry, training
    from airflow_mlops.storage import LocalStorage

    spec = load_spec(SPEC)
    scenario = churn_data.Scenario(customers=customers, corrupt_day=None)
    lake = LocalStorage(work / "lake")
    features.write_offline(lake, spec, scenario.day(8), churn_data.snapshot(scenario, 8))
    online = (
        {"type": "sqlite", "path": str(work / "online.db")}
        if store_kind == "sqlite"
        else {"type": "redis", "connection_string": REDIS}
    )
    if store_kind == "redis":
        import redis

        redis.Redis(db=14).flushdb()
    feast = features.FeastTarget(
        {
            "project": "serving_bench",
            "registry": {"registry_type": "sql", "path": f"sqlite:///{work / 'registry.db'}"},
            "online_store": online,
            "offline_store": {"type": "duckdb"},
        }
    )
    store = feast.store()
    features.apply(store, spec, lake)
    features.materialize(store, lake, spec, scenario.day(8))

    small = churn_data.Scenario(customers=2000, corrupt_day=None)
    frames = [
        churn_data.snapshot(small, i).merge(
            churn_data.labels_arriving(small, i + 3), on=["customer_id", "event_timestamp"]
        )
        for i in range(8)
    ]
    import pandas as pd

    labelled = pd.concat(frames, ignore_index=True)
    split = training.time_split(labelled, spec.data.timestamp_column, 2)
    model = training.fit(spec.training.model, spec.data, split.train)
    target = registry.MlflowTarget(f"sqlite:///{work / 'mlflow.db'}", artifact_location=(work / "art").as_uri())
    candidate = registry.log_and_register(
        target,
        experiment="serving_bench",
        run_name="bench",
        model_name=spec.registered_model_name,
        model=model,
        data=spec.data,
        metrics=training.evaluate(model, split.holdout, spec.data),
        params={},
        tags={"logical_date": str(scenario.day(8))},
        training_key="bench",
        input_example=split.holdout[spec.data.feature_names].head(3),
        artifacts={},
    )
    registry.promote(target, spec.registered_model_name, candidate.version, "bench", gated_against=None)
    return {
        "AIRFLOW_HOME": str(work / "airflow"),
        "AIRFLOW_CONN_FEAST_DEFAULT": json.dumps({"conn_type": "mlops_feast", "extra": feast.config}),
        "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps(
            {"conn_type": "mlops_mlflow", "extra": {"tracking_uri": target.tracking_uri}}
        ),
        "MLFLOW_TRACKING_URI": target.tracking_uri,
        "FEAST_CONFIG": json.dumps(feast.config),
    }


@contextmanager
def server(command: list[str], env: dict[str, str], health: str, work: Path) -> Iterator[None]:
    import requests

    log = (work / f"server-{command[0].rsplit('/', 1)[-1]}.log").open("w")
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # MLflow runs `uvicorn`
    process = subprocess.Popen(command, env={**os.environ, **env, "PATH": path}, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if requests.get(health, timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                tail = Path(log.name).read_text()[-2000:]
                raise RuntimeError(f"{' '.join(command)} did not come up:\n{tail}")
            time.sleep(0.5)
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)


def latencies(call: Callable[[list[int]], dict[int, float]], ids: list[list[int]]) -> np.ndarray:
    for batch in ids[:20]:  # warm up: connections, lazy imports, caches
        call(batch)
    times = []
    for batch in ids:
        start = time.perf_counter()
        call(batch)
        times.append(time.perf_counter() - start)
    return np.array(times) * 1000


def throughput(call: Callable[[list[int]], dict[int, float]], ids: list[list[int]], threads: int) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(call, ids))
    return len(ids) / (time.perf_counter() - start)


def wrk_throughput(port: int, customers: int, work: Path, connections: int = 16, seconds: int = 10) -> float | None:
    """Single-id requests/s that ``wrk`` gets from the server; ``None`` where wrk is not installed."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    script = work / "single-id.lua"
    script.write_text(
        "math.randomseed(0)\n"
        f'request = function() return wrk.format("GET", "/predict/" .. math.random(1, {customers})) end\n'
    )
    command = [wrk, "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(script), f"http://127.0.0.1:{port}"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk got error answers:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def ours_client() -> Callable[[list[int]], dict[int, float]]:
    import requests

    session = requests.Session()

    def call(ids: list[int]) -> dict[int, float]:
        body = session.post(f"http://127.0.0.1:{OURS_PORT}/predict", json={"ids": ids}, timeout=30).json()
        return {p["id"]: p["score"] for p in body["predictions"]}

    return call


def baseline_client(feast_config: dict[str, Any]) -> Callable[[list[int]], dict[int, float]]:
    """Feast SDK in the caller, then MLflow's scoring server: what a team wires up by hand."""
    import requests

    from airflow_mlops.spec import load_spec
    from airflow_mlops.steps.features import FeastTarget, feature_refs

    spec = load_spec(SPEC)
    store = FeastTarget(feast_config).store()
    refs = feature_refs(spec)
    session = requests.Session()

    def call(ids: list[int]) -> dict[int, float]:
        frame = store.get_online_features(features=refs, entity_rows=[{"customer_id": i} for i in ids]).to_df()
        payload = {"dataframe_split": frame[spec.data.feature_names].to_dict(orient="split")}
        answer = session.post(f"http://127.0.0.1:{BASE_PORT}/invocations", json=payload, timeout=30).json()
        return dict(zip(ids, (row[-1] for row in answer["predictions"]), strict=True))

    return call


def measure(
    call: Callable[[list[int]], dict[int, float]], customers: int, requests_n: int, clients: int
) -> dict[str, float | None]:
    rng = np.random.default_rng(0)
    single = [[int(i)] for i in rng.integers(1, customers + 1, requests_n)]
    hundred = [
        [int(i) for i in rng.choice(np.arange(1, customers + 1), 100, replace=False)] for _ in range(requests_n // 5)
    ]
    one, many = latencies(call, single), latencies(call, hundred)
    return {
        "p50_1": float(np.percentile(one, 50)),
        "p99_1": float(np.percentile(one, 99)),
        "p50_100": float(np.percentile(many, 50)),
        "p99_100": float(np.percentile(many, 99)),
        "rps": throughput(call, single, clients),
    }


def run(customers: int, store_kind: str, requests_n: int, clients: int = 16) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        work = Path(tmp)
        env = prepare(work, customers, store_kind)
        sample = list(range(1, 101))
        cli = str(Path(sys.executable).with_name("airflow-mlops"))
        with server(
            [cli, "serve", str(SPEC), "--port", str(OURS_PORT)], env, f"http://127.0.0.1:{OURS_PORT}/health", work
        ):
            ours = measure(ours_client(), customers, requests_n, clients)
            ours_scores = ours_client()(sample)
            ours["wrk_rps"] = wrk_throughput(OURS_PORT, customers, work)
        mlflow = str(Path(sys.executable).with_name("mlflow"))
        command = [mlflow, "models", "serve", "-m", "models:/churn_model@champion", "--env-manager", "local"]
        command += ["-p", str(BASE_PORT), "-h", "127.0.0.1", "-w", "1"]
        with server(command, env, f"http://127.0.0.1:{BASE_PORT}/ping", work):
            base_call = baseline_client(json.loads(env["FEAST_CONFIG"]))
            base = measure(base_call, customers, requests_n, clients)
            base_scores = base_call(sample)
    gap = max(abs(ours_scores[i] - base_scores[i]) for i in sample)
    return {"store": store_kind, "customers": customers, "ours": ours, "base": base, "max_score_gap": gap}


def table(results: list[dict[str, Any]]) -> str:
    header = [
        "online store",
        "request",
        "ours p50 / p99",
        "baseline p50 / p99",
        "ours req/s",
        "baseline req/s",
        "ours req/s (wrk)",
        "agreement",
    ]
    lines = [header, ["---"] * len(header)]
    for r in results:
        ours, base = r["ours"], r["base"]
        agreement = f"same scores (max gap {r['max_score_gap']:.1e}, 100 ids)"
        lines.append([r["store"], "1 id", f"{ours['p50_1']:.1f} / {ours['p99_1']:.1f} ms",
                      f"{base['p50_1']:.1f} / {base['p99_1']:.1f} ms", f"{ours['rps']:.0f}", f"{base['rps']:.0f}",
                      "" if ours["wrk_rps"] is None else f"{ours['wrk_rps']:.0f}", agreement])  # fmt: skip
        lines.append([r["store"], "100 ids", f"{ours['p50_100']:.1f} / {ours['p99_100']:.1f} ms",
                      f"{base['p50_100']:.1f} / {base['p99_100']:.1f} ms", "", "", "", ""])  # fmt: skip
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=1000, help="sequential single-id calls (100-id: a fifth)")
    parser.add_argument("--stores", nargs="+", default=["sqlite", "redis"], choices=["sqlite", "redis"])
    parser.add_argument("--clients", type=int, default=16, help="client threads for the throughput run")
    args = parser.parse_args()
    results = [run(args.customers, store, args.requests, args.clients) for store in args.stores]
    print(f"targets: {TARGETS}\n")
    print(table(results))


if __name__ == "__main__":
    main()
