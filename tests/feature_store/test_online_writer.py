"""The fast online writer leaves the online store exactly as Feast's own ``materialize`` would.

Every test materialises the same offline data twice, once with Feast's default engine and once
with ``FastOnlineWriteEngine``, and compares the raw online-store contents byte for byte, what
``get_online_features`` returns, and the intervals recorded in the registry.
"""

from __future__ import annotations

import sqlite3
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest

from airflow_mlops.feature_store import online_writer, redis_writer, sqlite_writer
from airflow_mlops.steps import features

REDIS_URL = "127.0.0.1:6379"
REDIS_DB = 13
FEATURES = {
    "count": "Int64",
    "small": "Int32",
    "amount": "Float64",
    "ratio": "Float32",
    "label": "String",
    "flag": "Bool",
    "sparse_count": "Int64",
}
T0 = datetime(2026, 1, 10, tzinfo=UTC)


def offline_frame(entities: int = 240, seed: int = 7, rows_per_entity: int = 3) -> pd.DataFrame:
    """Rows of each entity at distinct times, with nulls, NaN, extremes and multi-byte strings."""
    rng = np.random.default_rng(seed)
    rows = entities * rows_per_entity
    ids = np.tile(np.arange(entities, dtype=np.int64) * 7919 - 500, rows_per_entity)
    offsets = rng.integers(0, 5 * 86_400_000_000, rows)  # microseconds, so sub-second parts occur
    label_choices = np.array(["", "a", "é" * 70, "zürich", "x" * 200], dtype=object)
    frame = pd.DataFrame(
        {
            "entity_id": ids,
            "event_timestamp": pd.to_datetime(T0) + pd.to_timedelta(offsets, unit="us"),
            "count": rng.integers(-(2**62), 2**62, rows),
            "small": rng.integers(-(2**31), 2**31 - 1, rows).astype(np.int32),
            "amount": rng.choice([0.1, -0.0, 1e-5, 1e16, 123456.789, np.inf, np.nan, 2.5], rows),
            "ratio": rng.normal(size=rows).astype(np.float32),
            "label": rng.choice(label_choices, rows),
            "flag": rng.integers(0, 2, rows).astype(bool),
            "sparse_count": rng.integers(-1000, 1000, rows).astype(float),
        }
    )
    frame.loc[rng.random(rows) < 0.2, "label"] = None
    frame.loc[rng.random(rows) < 0.3, "sparse_count"] = np.nan  # an Int64 feature stored as float with NaN
    frame["flag"] = frame["flag"].astype(object)
    frame.loc[rng.random(rows) < 0.1, "flag"] = None
    frame["created"] = frame["event_timestamp"] + pd.to_timedelta(rng.integers(0, 10, rows), unit="s")
    return frame


def definitions(parquet: Path, with_created: bool, extra: dict[str, str]) -> list[Any]:
    import feast.types
    from feast import Entity, FeatureView, Field, FileSource
    from feast.value_type import ValueType

    entity = Entity(name="entity", join_keys=["entity_id"], value_type=ValueType.INT64)
    source = FileSource(
        name="events",
        path=str(parquet),
        timestamp_field="event_timestamp",
        created_timestamp_column="created" if with_created else "",
    )
    view = FeatureView(
        name="events_view",
        entities=[entity],
        ttl=timedelta(days=30),
        schema=[Field(name=name, dtype=getattr(feast.types, dtype)) for name, dtype in {**FEATURES, **extra}.items()],
        source=source,
        online=True,
    )
    return [entity, view]


def feast_store(
    root: Path,
    online: dict[str, Any],
    parquet: Path,
    fast: bool,
    with_created: bool = False,
    extra: dict[str, str] | None = None,
) -> Any:
    from feast import FeatureStore, RepoConfig

    root.mkdir(parents=True, exist_ok=True)
    config = {
        "project": "writer_test",
        "provider": "local",
        "registry": str(root / "registry.db"),
        "online_store": online,
        "offline_store": {"type": "duckdb"},
        "entity_key_serialization_version": 3,
    }
    if fast:
        config["batch_engine"] = {"type": online_writer.ENGINE_TYPE, "chunk_rows": 50}  # several chunks
    store = FeatureStore(config=RepoConfig(**config))
    store.apply(definitions(parquet, with_created, extra or {}))
    return store


def sqlite_contents(store: Any) -> list[tuple[Any, ...]]:
    path = store.config.online_store.path
    with sqlite3.connect(path) as connection:
        return connection.execute(
            "SELECT entity_key, feature_name, value, value_text, vector_value, event_ts, created_ts, typeof(event_ts) "
            'FROM "writer_test_events_view" ORDER BY entity_key, feature_name'
        ).fetchall()


def online_reads(store: Any, frame: pd.DataFrame) -> dict[str, list[Any]]:
    refs = [f"events_view:{name}" for name in FEATURES]
    rows = [{"entity_id": int(i)} for i in sorted(frame["entity_id"].unique())] + [{"entity_id": 10**12}]
    return store.get_online_features(features=refs, entity_rows=rows).to_dict()


def intervals(store: Any) -> list[tuple[datetime, datetime]]:
    return store.get_feature_view("events_view").materialization_intervals


def windows() -> list[tuple[datetime, datetime]]:
    """A newer window first, then an older overlapping one: the stores' overwrite rules show."""
    return [(T0 + timedelta(days=2), T0 + timedelta(days=5)), (T0, T0 + timedelta(days=3))]


def equal_reads(left: dict[str, list[Any]], right: dict[str, list[Any]]) -> bool:
    """Exact equality where NaN equals NaN (floats never go through arithmetic here)."""
    return left.keys() == right.keys() and all(
        len(left[k]) == len(right[k])
        and all(
            a == b or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)
            for a, b in zip(left[k], right[k], strict=True)
        )
        for k in left
    )


@pytest.fixture(params=[3, 1], ids=["3 rows per entity", "1 row per entity"])
def parquet(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Path, pd.DataFrame]:
    """Duplicates go through the newest-row selection; a snapshot partition skips it."""
    frame = offline_frame(rows_per_entity=request.param)
    path = tmp_path / "events.parquet"
    frame.to_parquet(path, index=False)
    return path, frame


@pytest.mark.parametrize("with_created", [False, True])
def test_sqlite_contents_are_byte_identical_to_feast(tmp_path, parquet, with_created):
    path, frame = parquet
    stores = {
        fast: feast_store(
            tmp_path / str(fast), {"type": "sqlite", "path": str(tmp_path / f"{fast}.db")}, path, fast, with_created
        )
        for fast in (False, True)
    }
    snapshots = []
    for start, end in reversed(windows()):  # in time order: Feast's SQLite store never compares timestamps
        for store in stores.values():
            store.materialize(start_date=start, end_date=end, feature_views=["events_view"])
        snapshots.append(sqlite_contents(stores[True]))
        assert snapshots[-1] == sqlite_contents(stores[False])
    assert snapshots[0] != snapshots[1], "the second window must change some rows, or the test shows nothing"
    contents = snapshots[-1]
    assert len(contents) == frame["entity_id"].nunique() * len(FEATURES)
    assert {row[2] for row in contents} >= {b""}, "nulls must be written as empty ValueProtos"
    assert equal_reads(online_reads(stores[True], frame), online_reads(stores[False], frame))
    assert intervals(stores[True]) == intervals(stores[False]) and len(intervals(stores[True])) == 2


def test_sqlite_keeps_newer_values_already_stored(tmp_path, parquet):
    """Days published out of order (the features DAG runs several at once): unlike Feast's own SQLite
    store, an older window never replaces a newer value."""
    path, _ = parquet
    store = feast_store(tmp_path, {"type": "sqlite", "path": str(tmp_path / "online.db")}, path, fast=True)
    late, early = windows()
    store.materialize(start_date=late[0], end_date=late[1], feature_views=["events_view"])
    before = {row[:2]: row for row in sqlite_contents(store)}
    store.materialize(start_date=early[0], end_date=early[1], feature_views=["events_view"])
    after = {row[:2]: row for row in sqlite_contents(store)}
    assert set(after) > set(before), "the older window must add entities the newer one lacks"
    assert all(after[key] == row for key, row in before.items()), "an older window overwrote a newer value"


def test_entity_keys_and_values_match_feasts_serializers():
    import pyarrow as pa
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value
    from feast.types import Bool, Float32, Float64, Int32, Int64, String

    samples: dict[Any, tuple[list[Any], str]] = {
        Int64: ([0, 1, -1, 127, 128, 2**63 - 1, -(2**63), None], "int64_val"),
        Int32: ([0, -1, 2**31 - 1, -(2**31), 300, None], "int32_val"),
        Float64: ([0.0, -0.0, 1.5, float("inf"), 1e-300, None], "double_val"),
        Float32: ([0.0, -2.5, 3.4e38, None], "float_val"),
        String: (["", "a", "é" * 100, None], "string_val"),
        Bool: ([True, False, None], "bool_val"),
    }
    for dtype, (values, field) in samples.items():
        typed = pa.array(values, online_writer.ENCODINGS[dtype].arrow_type)
        expected = [b"" if v is None else Value(**{field: v}).SerializeToString() for v in values]
        assert online_writer.serialize_values(typed, dtype).to_pylist() == expected, dtype

    from airflow_mlops.feature_store.online_writer import serialize_entity_keys

    class View:
        def __init__(self, columns: list[Any]) -> None:
            self.entity_columns = columns

    from feast import Field

    view = View([Field(name="b_id", dtype=String), Field(name="a_id", dtype=Int64)])
    table = pa.table({"a_id": [5, -(2**40)], "b_id": ["x", "ünï"]})
    expected = [
        serialize_entity_key(
            EntityKey(join_keys=["b_id", "a_id"], entity_values=[Value(string_val=b), Value(int64_val=a)]),
            entity_key_serialization_version=3,
        )
        for a, b in zip(table["a_id"].to_pylist(), table["b_id"].to_pylist(), strict=True)
    ]
    assert serialize_entity_keys(table, cast(Any, view), 3).to_pylist() == expected


def test_sqlite_event_seconds_follow_the_adapter_feast_registers():
    micros = np.array([0, 1, 999_999, -1, -1_500_000, 1_767_225_600_123_456], dtype=np.int64)
    expected = [int((datetime(1970, 1, 1) + timedelta(microseconds=int(m))).timestamp()) for m in micros]
    assert sqlite_writer.sqlite_epoch_seconds(micros).tolist() == expected


def test_redis_timestamps_match_protobuf():
    from google.protobuf.timestamp_pb2 import Timestamp

    micros = np.array([0, 1, 1_000_000, -1, -1_500_000, 1_767_225_600_123_456], dtype=np.int64)
    serialized, nanos = redis_writer.timestamp_protos(micros)
    for index, value in enumerate(micros):
        stamp = Timestamp()
        stamp.FromDatetime(datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(value)))
        assert serialized[index].as_py() == stamp.SerializeToString()
        assert nanos[index] == stamp.seconds * 1_000_000_000 + stamp.nanos


def test_other_stores_and_dtypes_fall_back_to_feasts_own_writer(tmp_path, parquet):
    path, frame = parquet
    extra = {"stamp": "UnixTimestamp"}  # no fast encoding: Feast writes this view itself
    frame.assign(stamp=frame["event_timestamp"]).to_parquet(path, index=False)
    stores = {
        fast: feast_store(
            tmp_path / str(fast), {"type": "sqlite", "path": str(tmp_path / f"{fast}.db")}, path, fast, extra=extra
        )
        for fast in (False, True)
    }
    view = stores[True].get_feature_view("events_view")
    assert "'stamp'" in (online_writer.unsupported_reason(stores[True].config, view) or "")
    other_store = SimpleNamespace(online_store=SimpleNamespace(type="postgres"))
    assert "'postgres'" in (online_writer.unsupported_reason(cast(Any, other_store), view) or "")
    for store in stores.values():
        store.materialize(start_date=T0, end_date=T0 + timedelta(days=5), feature_views=["events_view"])
    assert sqlite_contents(stores[True]) == sqlite_contents(stores[False])
    assert len(sqlite_contents(stores[True])) == frame["entity_id"].nunique() * (len(FEATURES) + 1)


def test_the_pipeline_store_uses_the_fast_engine(tmp_path):
    target = features.FeastTarget(
        {
            "project": "p",
            "registry": str(tmp_path / "registry.db"),
            "online_store": {"type": "sqlite", "path": str(tmp_path / "online.db")},
            "offline_store": {"type": "duckdb"},
        }
    )
    engine = target.store()._get_provider().batch_engine
    assert isinstance(engine, online_writer.FastOnlineWriteEngine)


# ---- Redis -------------------------------------------------------------------------------------


@pytest.fixture
def redis_db():
    redis = pytest.importorskip("redis")
    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as error:
        pytest.skip(f"no Redis at {REDIS_URL} ({error}); the Redis writer is only checked against a live server")
    client.flushdb()
    yield client
    client.flushdb()


def redis_contents(client: Any) -> dict[bytes, dict[bytes, bytes]]:
    """Every hash (Feast's entities); not the writers' lock."""
    return {key: client.hgetall(key) for key in client.scan_iter(count=1000, _type="HASH")}


@pytest.mark.parametrize("key_ttl_seconds", [None, 3600])
def test_redis_contents_are_identical_to_feast(tmp_path, parquet, redis_db, key_ttl_seconds):
    path, frame = parquet
    online = {"type": "redis", "connection_string": f"{REDIS_URL},db={REDIS_DB}", "key_ttl_seconds": key_ttl_seconds}
    results = {}
    for fast in (False, True):
        redis_db.flushdb()
        store = feast_store(tmp_path / str(fast), online, path, fast, with_created=True)
        snapshots = []
        for start, end in windows():  # the older window second: Feast's timestamp check must hold
            store.materialize(start_date=start, end_date=end, feature_views=["events_view"])
            snapshots.append(redis_contents(redis_db))
        ttls = {redis_db.ttl(key) > 0 for key in snapshots[-1]}
        results[fast] = (snapshots, online_reads(store, frame), intervals(store), ttls)
    (feast_snapshots, feast_reads, feast_intervals, feast_ttls), (ours, our_reads, our_intervals, our_ttls) = (
        results[False],
        results[True],
    )
    assert ours == feast_snapshots
    assert len(ours[-1]) == frame["entity_id"].nunique()
    assert ours[0] != ours[1], "the second window must change some entities, or the test shows nothing"
    assert equal_reads(our_reads, feast_reads)
    assert our_intervals == feast_intervals
    assert our_ttls == feast_ttls == {key_ttl_seconds is not None}


def test_redis_keeps_newer_values_already_stored(tmp_path, parquet, redis_db):
    path, frame = parquet
    online = {"type": "redis", "connection_string": f"{REDIS_URL},db={REDIS_DB}"}
    store = feast_store(tmp_path / "fast", online, path, fast=True)
    late, early = windows()
    store.materialize(start_date=late[0], end_date=late[1], feature_views=["events_view"])
    before = redis_contents(redis_db)
    store.materialize(start_date=early[0], end_date=early[1], feature_views=["events_view"])
    after = redis_contents(redis_db)
    in_late = set(frame.loc[frame["event_timestamp"] >= late[0], "entity_id"])
    ts_field = b"_ts:events_view"
    key_of = {key: struct.unpack("<q", key[-8 - len(b"writer_test") : -len(b"writer_test")])[0] for key in after}
    for key, fields in after.items():
        if key_of[key] in in_late:
            assert fields == before[key], "an older window overwrote a newer stored value"
        else:
            assert fields[ts_field]


class SocketConnection:
    """The part of a redis-py connection the writer reads from: its socket."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock


@pytest.fixture
def reply_socket():
    import socket

    ours, redis_side = socket.socketpair()
    yield SocketConnection(ours), redis_side
    ours.close()
    redis_side.close()


def test_write_acknowledgements_are_counted_across_reads(reply_socket):
    connection, redis_side = reply_socket
    acknowledgements = redis_writer.Acknowledgements(connection)
    acknowledgements.due = 3
    redis_side.sendall(b":11\r\n:1")
    acknowledgements.drain(wait=False)
    assert acknowledgements.due == 2
    redis_side.sendall(b"1\r\n:0\r\n")
    acknowledgements.drain(wait=True)
    assert acknowledgements.due == 0


@pytest.mark.parametrize("split", [False, True], ids=["one read", "error at the start of a read"])
def test_a_rejected_write_raises_with_redis_message(reply_socket, split):
    connection, redis_side = reply_socket
    acknowledgements = redis_writer.Acknowledgements(connection)
    acknowledgements.due = 3
    redis_side.sendall(b":11\r\n")
    if split:
        acknowledgements.drain(wait=False)
        assert acknowledgements.due == 2
    redis_side.sendall(b"-WRONGTYPE Operation against a key\r\n:1\r\n")
    with pytest.raises(RuntimeError, match=r"Redis rejected a write: WRONGTYPE Operation against a key$"):
        acknowledgements.drain(wait=True)


def test_lookup_replies_are_parsed_as_one_list(reply_socket):
    connection, redis_side = reply_socket
    redis_side.sendall(b"$-1\r\n$3\r\n\r\n\n\r\n$0\r\n\r\n")
    assert redis_writer.read_replies(connection, 3) == [None, b"\r\n\n", b""]
    redis_side.sendall(b"$-1\r\n-ERR no\r\n")
    with pytest.raises(RuntimeError, match="Redis rejected 1 of 2 commands, the first with: ERR no"):
        redis_writer.read_replies(connection, 2)


def test_a_key_of_another_type_fails_the_materialisation_with_redis_error(tmp_path, parquet, redis_db):
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    path, frame = parquet
    start, end = windows()[0]
    entity = int(frame.loc[frame["event_timestamp"] >= start, "entity_id"].iloc[0])
    key = EntityKey(join_keys=["entity_id"], entity_values=[Value(int64_val=entity)])
    redis_db.set(serialize_entity_key(key, 3) + b"writer_test", b"not a hash")
    online = {"type": "redis", "connection_string": f"{REDIS_URL},db={REDIS_DB}"}
    store = feast_store(tmp_path, online, path, fast=True)
    with pytest.raises(RuntimeError, match="WRONGTYPE"):
        store.materialize(start_date=start, end_date=end, feature_views=["events_view"])


# ---- Redis through faults ----------------------------------------------------------------------


def test_a_connection_dropped_half_way_leaves_contents_identical_after_the_retry(tmp_path, parquet, redis_db):
    from tests.faults.proxy import TcpFaults

    path, _ = parquet
    start, end = windows()[0]
    clean = {"type": "redis", "connection_string": f"{REDIS_URL},db={REDIS_DB}"}
    feast_store(tmp_path / "clean", clean, path, fast=True).materialize(start, end, ["events_view"])
    expected = redis_contents(redis_db)
    redis_db.flushdb()

    proxy = TcpFaults(("127.0.0.1", 6379), cut_after=20_000).start()
    try:
        cut = {"type": "redis", "connection_string": f"127.0.0.1:{proxy.port},db={REDIS_DB}"}
        store = feast_store(tmp_path / "cut", cut, path, fast=True)
        with pytest.raises((ConnectionError, OSError, RuntimeError)):
            store.materialize(start, end, ["events_view"])
        assert 0 < len(redis_contents(redis_db)) < len(expected), "the cut must land half-way through the write"
        store.materialize(start, end, ["events_view"])  # the retry, through the same proxy (no cut this time)
    finally:
        proxy.stop()
    assert redis_contents(redis_db) == expected


def test_a_redis_that_never_answers_fails_the_write_within_its_timeout(tmp_path, parquet, monkeypatch):
    import redis

    from tests.faults.proxy import TcpFaults

    monkeypatch.setattr(redis_writer, "REPLY_TIMEOUT_S", 1.0)
    path, _ = parquet
    start, end = windows()[0]
    proxy = TcpFaults(("127.0.0.1", 6379), blackhole=True).start()
    try:
        silent = {"type": "redis", "connection_string": f"127.0.0.1:{proxy.port},db={REDIS_DB}"}
        with pytest.raises((TimeoutError, redis.exceptions.TimeoutError)) as raised:
            feast_store(tmp_path, silent, path, fast=True).materialize(start, end, ["events_view"])
    finally:
        proxy.stop()
    assert "imeout" in f"{type(raised.value).__name__}: {raised.value}"


def test_writers_of_one_view_take_turns(tmp_path, parquet, redis_db):
    """A second writer waits for the lock held by the first: their lookups and writes cannot interleave."""
    import threading

    path, _ = parquet
    start, end = windows()[0]
    online = {"type": "redis", "connection_string": f"{REDIS_URL},db={REDIS_DB}"}
    store = feast_store(tmp_path, online, path, fast=True)
    held = redis_db.lock("airflow_mlops:write:writer_test:events_view", timeout=60)
    assert held.acquire(blocking=False)
    writer = threading.Thread(target=store.materialize, args=(start, end, ["events_view"]))
    writer.start()
    writer.join(timeout=3)
    assert writer.is_alive() and not redis_contents(redis_db), "the writer went ahead of the lock's holder"
    held.release()
    writer.join(timeout=60)
    assert not writer.is_alive() and redis_contents(redis_db)
