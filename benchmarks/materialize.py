"""Feature materialisation: our fast online writer vs Feast's own ``FeatureStore.materialize``.

    python benchmarks/materialize.py --rows 100000 --stores sqlite redis

One offline parquet (one row per entity, int64/float64/string features with 1 % nulls, like the
churn spec) is generated once; each side then materialises it in its own fresh subprocess, so its
peak RSS (``ru_maxrss`` of that child) is its own. Time is the ``materialize`` call alone, after an
untimed one on an empty window that pays Feast's lazy imports, as a worker has already. Agreement
compares, for up to 1000 sampled entities, both what ``get_online_features`` returns and the raw
online-store contents (SQLite rows, Redis hashes). Redis runs against 127.0.0.1:6379 db 14, which
is flushed before each side.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REDIS = "127.0.0.1:6379"
REDIS_DB = 14
PROJECT = "bench"
VIEW = "bench_view"
START = datetime(2026, 1, 1, tzinfo=UTC)
SAMPLE = 1000


def feature_dtypes(features: int) -> dict[str, str]:
    """Four float64 : four int64 : two string, cycling, like the churn spec's features."""
    cycle = ["float64", "int64", "string", "int64", "float64", "int64", "float64", "string", "float64", "int64"]
    return {f"f{index}": cycle[index % len(cycle)] for index in range(features)}


def write_offline(path: Path, rows: int, features: int, seed: int = 0) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    micros = rng.integers(0, 86_400_000_000, rows) + int(START.timestamp() * 1_000_000)
    columns: dict[str, Any] = {
        "entity_id": pa.array(rng.permutation(rows).astype(np.int64) * 13 + 1),
        "event_timestamp": pa.array(micros, pa.timestamp("us", tz="UTC")),
    }
    words = np.array(["monthly", "one_year", "two_year", "north", "south", "east", "west", "überall"])
    for name, dtype in feature_dtypes(features).items():
        nulls = rng.random(rows) < 0.01
        if dtype == "float64":
            values = pa.array(rng.normal(50, 20, rows), mask=nulls)
        elif dtype == "int64":
            values = pa.array(rng.integers(-1000, 100_000, rows), mask=nulls)
        else:
            values = pa.array(words[rng.integers(0, len(words), rows)].tolist(), pa.string(), mask=nulls)
        columns[name] = values
    pq.write_table(pa.table(columns), path)


def online_config(store: str, side_dir: Path) -> dict[str, Any]:
    if store == "sqlite":
        return {"type": "sqlite", "path": str(side_dir / "online.db")}
    if store == "redis":
        return {"type": "redis", "connection_string": f"{REDIS},db={REDIS_DB}"}
    raise ValueError(f"unknown store {store!r}: use sqlite or redis")


def redis_client() -> Any:
    import redis

    host, port = REDIS.split(":")
    client = redis.Redis(host=host, port=int(port), db=REDIS_DB)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as error:
        raise RuntimeError(f"the Redis benchmark needs a Redis server at {REDIS}: {error}") from error
    return client


def materialise_side(side: str, store_kind: str, parquet: Path, side_dir: Path, sample: list[int], out: Path) -> None:
    """Child process: apply, time one ``materialize``, read back the sampled entities."""
    import time

    import feast.types
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig
    from feast.value_type import ValueType

    from airflow_mlops.feature_store.online_writer import ENGINE_TYPE

    features = feature_dtypes(len(parquet_features(parquet)))
    config: dict[str, Any] = {
        "project": PROJECT,
        "provider": "local",
        "registry": str(side_dir / "registry.db"),
        "online_store": online_config(store_kind, side_dir),
        "offline_store": {"type": "duckdb"},
        "entity_key_serialization_version": 3,
    }
    if side == "ours":
        config["batch_engine"] = {"type": ENGINE_TYPE}
    store = FeatureStore(config=RepoConfig(**config))
    entity = Entity(name="entity", join_keys=["entity_id"], value_type=ValueType.INT64)
    types = {"float64": feast.types.Float64, "int64": feast.types.Int64, "string": feast.types.String}
    view = FeatureView(
        name=VIEW,
        entities=[entity],
        ttl=timedelta(days=30),
        schema=[Field(name=name, dtype=types[dtype]) for name, dtype in features.items()],
        source=FileSource(name="bench_source", path=str(parquet), timestamp_field="event_timestamp"),
        online=True,
    )
    store.apply([entity, view])
    # Steady state, as in a worker that has materialised before: the first call's lazy imports
    # (DuckDB, ibis) and first-use costs are paid by an untimed call on an empty window.
    store.materialize(start_date=START - timedelta(days=2), end_date=START, feature_views=[VIEW])
    started = time.perf_counter()
    store.materialize(start_date=START, end_date=START + timedelta(days=2), feature_views=[VIEW])
    elapsed = time.perf_counter() - started
    refs = [f"{VIEW}:{name}" for name in features]
    reads = store.get_online_features(features=refs, entity_rows=[{"entity_id": i} for i in sample]).to_dict()
    raw = raw_contents(store, store_kind, sample)
    out.write_bytes(pickle.dumps({"seconds": elapsed, "reads": reads, "raw": raw}))


def parquet_features(parquet: Path) -> list[str]:
    import pyarrow.parquet as pq

    return [name for name in pq.read_schema(parquet).names if name not in ("entity_id", "event_timestamp")]


def raw_contents(store: Any, store_kind: str, sample: list[int]) -> list[Any]:
    """What the online store holds for each sampled entity, exactly as stored."""
    import sqlite3

    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    keys = [
        serialize_entity_key(EntityKey(join_keys=["entity_id"], entity_values=[Value(int64_val=i)]), 3) for i in sample
    ]
    if store_kind == "redis":
        client = redis_client()
        return [client.hgetall(key + PROJECT.encode()) for key in keys]
    with sqlite3.connect(store.config.online_store.path) as connection:
        query = f'SELECT * FROM "{PROJECT}_{VIEW}" WHERE entity_key = ? ORDER BY feature_name'
        return [connection.execute(query, (key,)).fetchall() for key in keys]


def run_side(
    side: str, store: str, parquet: Path, work: Path, sample: list[int]
) -> tuple[float, float, dict[str, Any]]:
    """Run one side in a fresh interpreter; its own peak RSS comes from ``wait4``."""
    side_dir = work / side
    side_dir.mkdir()
    if store == "redis":
        redis_client().flushdb()
    out, log = side_dir / "result.pickle", side_dir / "stderr.log"
    (side_dir / "sample.json").write_text(json.dumps(sample))
    command = [sys.executable, __file__, "--worker", side, store, str(parquet), str(side_dir)]
    with log.open("wb") as stderr:
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"{side} materialisation into {store} failed:\n{log.read_text()[-3000:]}")
    result = pickle.loads(out.read_bytes())
    return result["seconds"], usage.ru_maxrss / 1024, result


def agreement(ours: dict[str, Any], base: dict[str, Any], sample: list[int]) -> str:
    def same(a: Any, b: Any) -> bool:
        return a == b or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)

    agreeing = sum(
        ours["raw"][index] == base["raw"][index]
        and all(same(ours["reads"][k][index], base["reads"][k][index]) for k in base["reads"])
        for index in range(len(sample))
    )
    verdict = "identical" if agreeing == len(sample) else "DIFFERENT"
    return f"{verdict} ({agreeing}/{len(sample)} sampled keys)"


def run(rows: int, features: int, store: str) -> dict[str, Any]:
    """Generate the data once, materialise it with ours and with Feast's default, compare."""
    import numpy as np
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory(prefix="bench-materialize-") as folder:
        work = Path(folder)
        parquet = work / "offline.parquet"
        write_offline(parquet, rows, features)
        ids = pq.read_table(parquet, columns=["entity_id"])["entity_id"].to_numpy()
        sample = np.random.default_rng(1).choice(ids, min(SAMPLE, rows), replace=False).tolist()
        ours_s, ours_mb, ours = run_side("ours", store, parquet, work, sample)
        base_s, base_mb, base = run_side("base", store, parquet, work, sample)
        if store == "redis":
            redis_client().flushdb()
    return {
        "case": f"materialize {store}",
        "shape": f"{rows:,} x {features}",
        "ours_s": ours_s,
        "ours_mb": ours_mb,
        "base_s": base_s,
        "base_mb": base_mb,
        "agreement": agreement(ours, base, sample),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000])
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--stores", nargs="+", default=["sqlite", "redis"], choices=["sqlite", "redis"])
    parser.add_argument("--worker", nargs=4, metavar=("SIDE", "STORE", "PARQUET", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        side, store, parquet, side_dir = args.worker
        sample = json.loads((Path(side_dir) / "sample.json").read_text())
        materialise_side(side, store, Path(parquet), Path(side_dir), sample, Path(side_dir) / "result.pickle")
        return
    print("| case | rows x cols | ours (s, peak MB) | baseline (s, peak MB) | ratio | agreement |")
    print("|---|---|---|---|---|---|")
    for rows in args.rows:
        for store in args.stores:
            r = run(rows, args.features, store)
            print(
                f"| {r['case']} | {r['shape']} | {r['ours_s']:.2f} s, {r['ours_mb']:.0f} MB "
                f"| {r['base_s']:.2f} s, {r['base_mb']:.0f} MB | {r['base_s'] / r['ours_s']:.1f}x | {r['agreement']} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
