"""Feast's SQLite online store, written the way Feast lays it out: one row per entity and feature, upserted
in primary-key order, many entities per statement. Called by :mod:`airflow_mlops.feature_store.online_writer`."""

from __future__ import annotations

import itertools
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from feast import FeatureView
from feast.infra.online_stores.helpers import compute_table_id
from feast.repo_config import RepoConfig
from feast.types import Bool, Int32, Int64, String

from airflow_mlops.feature_store.online_writer import (
    LatestRows,
)


def sqlite_epoch_seconds(micros: np.ndarray) -> np.ndarray:
    """What Feast's sqlite3 adapter stores: ``int(naive_utc_datetime.timestamp())``.

    ``timestamp()`` reads a naive datetime as *local* time; on a UTC host that is the epoch, computed
    here with the same float arithmetic as CPython. Elsewhere each distinct second goes through
    CPython itself.
    """
    seconds, micro = np.divmod(micros, 1_000_000)
    if time.timezone != 0 or time.altzone != 0:
        from datetime import datetime, timedelta

        distinct, inverse = np.unique(seconds, return_inverse=True)
        epoch = datetime(1970, 1, 1)
        local = [(epoch + timedelta(seconds=int(second))).timestamp() for second in distinct]
        seconds = np.array(local, dtype=np.int64)[inverse]
    return np.trunc(seconds.astype(np.float64) + micro / 1e6).astype(np.int64)


def value_texts(values: pa.Array, dtype: Any) -> list[str | None]:
    """``helpers.extract_text_and_num``'s text: ``str()`` of the proto value, None for null."""
    if dtype == String:
        return values.to_pylist()
    if dtype in (Int64, Int32):
        return values.cast(pa.string()).to_pylist()
    if dtype == Bool:
        return [None if value is None else str(value) for value in values.to_pylist()]
    floats = values.cast(pa.float64()).to_pylist()  # float32 widened exactly, as the proto getter does
    return [None if value is None else repr(value) for value in floats]


ENTITIES_PER_STATEMENT = 16


def sqlite_upsert(table: str, names: list[str], entities: int) -> str:
    """Feast's upsert, but one multi-row VALUES per ``entities`` entities and their features, and an older
    value never replaces a newer one (days published out of order, a re-run of an old day).

    Each entity's key, event and created timestamps are bound once and reused for all its feature
    rows (numbered parameters): binding, not SQLite's B-tree work, is most of the per-row cost.
    """
    width = 2 * len(names) + 3
    literals = ["'" + name.replace("'", "''") + "'" for name in names]
    groups = [
        f"(?{key}, {literal}, ?{key + 1 + 2 * index}, ?{key + 2 + 2 * index}, ?{key + width - 2}, ?{key + width - 1})"
        for key in range(1, entities * width, width)
        for index, literal in enumerate(literals)
    ]
    return (
        f"INSERT INTO {table} (entity_key, feature_name, value, value_text, event_ts, created_ts) "
        f"VALUES {', '.join(groups)} ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
        "value = excluded.value, value_text = excluded.value_text, event_ts = excluded.event_ts, "
        "created_ts = excluded.created_ts WHERE excluded.event_ts >= event_ts"
    )


def sqlite_entity_params(view: FeatureView, rows: LatestRows, start: int, stop: int) -> list[tuple[Any, ...]]:
    """Per entity: key, (value, value_text) per feature in name order, event_ts, created_ts.

    Blobs go in as ``bytearray``: CPython's sqlite3 binds those directly, while ``bytes`` first
    takes a slow detour through the adapter registry.
    """
    size = stop - start
    columns: list[Sequence[Any]] = [list(map(bytearray, rows.entity_keys.slice(start, size).to_pylist()))]
    for field in sorted(view.features, key=lambda field: field.name):
        columns.append(list(map(bytearray, rows.values(field.name, start, size).to_pylist())))
        columns.append(value_texts(rows.features[field.name].slice(start, size), field.dtype))
    columns.append(sqlite_epoch_seconds(rows.event_micros[start:stop]).tolist())
    created = rows.created_micros
    columns.append(sqlite_epoch_seconds(created[start:stop]).tolist() if created is not None else [None] * size)
    return list(zip(*columns, strict=True))


def sqlite_statement_params(
    view: FeatureView, rows: LatestRows, start: int, stop: int
) -> tuple[list[tuple[Any, ...]], tuple[Any, ...]]:
    """Parameters of the full ``ENTITIES_PER_STATEMENT`` statements, and of the shorter last one."""
    entities = sqlite_entity_params(view, rows, start, stop)
    whole = len(entities) - len(entities) % ENTITIES_PER_STATEMENT
    full = [
        tuple(itertools.chain.from_iterable(entities[first : first + ENTITIES_PER_STATEMENT]))
        for first in range(0, whole, ENTITIES_PER_STATEMENT)
    ]
    return full, tuple(itertools.chain.from_iterable(entities[whole:]))


def write_sqlite(config: RepoConfig, view: FeatureView, rows: LatestRows, chunk: int) -> None:
    """One transaction, rows in primary-key order; the pragmas live only on this connection.

    Single-threaded on purpose: binding needs the GIL, and a helper thread preparing the next chunk
    makes every statement wait for the GIL to come back (measured: twice as slow).
    """
    from feast.infra.online_stores.sqlite import SqliteOnlineStore, _quote_id

    table = _quote_id(compute_table_id(config.project, view, config.registry.enable_online_feature_view_versioning))
    names = sorted(field.name for field in view.features)
    per_entity = 2 * len(names) + 3
    connection = sqlite3.connect(SqliteOnlineStore._get_db_path(config), timeout=60)
    try:
        connection.execute("PRAGMA synchronous = OFF")  # the rollback journal still makes the load atomic
        connection.execute("PRAGMA cache_size = -65536")  # 64 MiB
        with connection:
            for start in range(0, rows.count, chunk):
                full, rest = sqlite_statement_params(view, rows, start, min(start + chunk, rows.count))
                connection.executemany(sqlite_upsert(table, names, ENTITIES_PER_STATEMENT), full)
                if rest:
                    connection.execute(sqlite_upsert(table, names, len(rest) // per_entity), rest)
    finally:
        connection.close()
