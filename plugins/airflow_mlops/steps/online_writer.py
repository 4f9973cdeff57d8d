"""Fast materialisation into Feast's SQLite and Redis online stores, as a Feast batch engine.

Feast's default path turns every value into a ``ValueProto`` in Python and writes it with one SQL
statement per value (SQLite) or one pipelined HMGET + HSET per entity built by redis-py (Redis):
about 4k rows/s and gigabytes of RSS per million rows. This engine keeps everything else of
``FeatureStore.materialize`` (registry, definitions, state transitions, recorded materialisation
intervals, the offline read through Feast's own source node, the online read path) and replaces
only the write: the latest row per entity is picked with numpy, entity keys and values are
serialised column-wise into exactly the bytes Feast writes, and rows go out in chunks.

* SQLite: one transaction, primary-key order, Feast's upsert with one multi-row VALUES per 16
  entities so that each entity's key and timestamps are bound once. SQLite's own B-tree work is
  now most of the cost, and it is single-writer: a helper thread made it slower (GIL hand-offs).
* Redis: two connections. One looks up the stored ``_ts`` of a chunk's keys (Feast's check that
  an older row never overwrites a newer one), while the other streams the previous chunk's HSETs,
  so the single-threaded server always has work queued and is the bottleneck, not us. Commands
  are pre-encoded RESP; lookup replies are parsed by hiredis in one call per chunk, and write
  replies are only counted.

Select it with ``batch_engine: {"type": ENGINE_TYPE}`` in the ``RepoConfig``. Anything the fast
path does not reproduce byte for byte falls back to Feast's own local engine (logged with the
reason): other online stores (anything but ``sqlite`` and ``redis``/``redis_sentinel``), vector or
OpenAI-compatible SQLite tables, views with transformations, aggregations, filters or validation,
views that also write offline, and feature dtypes other than Int32/Int64/Float32/Float64/String/Bool.

Where we deliberately differ from Feast: among rows with the same entity *and* the same event (and
created) timestamp Feast keeps whichever an unstable pandas sort puts first; we keep the first in
the offline store's order. Int64 features of a window that contains nulls are written exactly,
where Feast's pandas round trip passes them through float64 (lossy above 2**53).
"""

from __future__ import annotations

import itertools
import logging
import sqlite3
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from feast import FeatureView
from feast.batch_feature_view import BatchFeatureView
from feast.infra.common.materialization_job import MaterializationJobStatus, MaterializationTask
from feast.infra.compute_engines.backends.pandas_backend import PandasBackend
from feast.infra.compute_engines.dag.context import ColumnInfo, ExecutionContext
from feast.infra.compute_engines.local.compute import LocalComputeEngine
from feast.infra.compute_engines.local.feature_builder import LocalFeatureBuilder
from feast.infra.compute_engines.local.job import LocalMaterializationJob
from feast.infra.online_stores.helpers import _mmh3, compute_table_id, compute_versioned_name
from feast.infra.registry.base_registry import BaseRegistry
from feast.repo_config import FeastConfigBaseModel, RepoConfig
from feast.types import Bool, Float32, Float64, Int32, Int64, String
from feast.value_type import ValueType

ENGINE_TYPE = "airflow_mlops.steps.online_writer.FastOnlineWriteEngine"

log = logging.getLogger(__name__)

SQLITE_TYPES = ("sqlite", "feast.infra.online_stores.sqlite.SqliteOnlineStore")
REDIS_TYPES = ("redis", "feast.infra.online_stores.redis.RedisOnlineStore")

# ValueProto oneof fields (feast/protos/feast/types/Value.proto): tag byte = field number << 3 | wire type.
TAG_STRING, TAG_INT32, TAG_INT64, TAG_DOUBLE, TAG_FLOAT, TAG_BOOL = 0x12, 0x18, 0x20, 0x29, 0x35, 0x38
# google.protobuf.Timestamp: seconds (field 1) and nanos (field 2), both varints.
TAG_SECONDS, TAG_NANOS = 0x08, 0x10


@dataclass(frozen=True)
class ValueEncoding:
    """How one Feast dtype is laid out: the Arrow type we cast to and the ValueProto tag."""

    arrow_type: pa.DataType
    tag: int


ENCODINGS: dict[Any, ValueEncoding] = {
    Int64: ValueEncoding(pa.int64(), TAG_INT64),
    Int32: ValueEncoding(pa.int32(), TAG_INT32),
    Float64: ValueEncoding(pa.float64(), TAG_DOUBLE),
    Float32: ValueEncoding(pa.float32(), TAG_FLOAT),
    String: ValueEncoding(pa.string(), TAG_STRING),
    Bool: ValueEncoding(pa.bool_(), TAG_BOOL),
}
# Entity values as feast.infra.key_encoding_utils._serialize_val writes them (serialization version >= 2).
ENTITY_ENCODINGS: dict[ValueType, tuple[pa.DataType, str | None]] = {
    ValueType.INT64: (pa.int64(), "<i8"),
    ValueType.INT32: (pa.int32(), "<i4"),
    ValueType.STRING: (pa.string(), None),
}


class FastOnlineWriteEngineConfig(FeastConfigBaseModel):
    """``batch_engine`` settings; Feast finds this class by the engine's name plus ``Config``."""

    type: Literal["airflow_mlops.steps.online_writer.FastOnlineWriteEngine"] = (
        "airflow_mlops.steps.online_writer.FastOnlineWriteEngine"
    )
    chunk_rows: int = 5_000
    """Entity rows serialised and written per chunk: bounds memory (not transactions), and is small
    enough that Redis lookups and writes overlap."""


class FastOnlineWriteEngine(LocalComputeEngine):
    """Feast's local engine with a vectorised, chunked write into SQLite and Redis online stores."""

    def __init__(self, *, chunk_rows: int = 5_000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if chunk_rows < 1:
            raise ValueError(f"batch_engine chunk_rows must be positive, got {chunk_rows}")
        self.chunk_rows = chunk_rows

    def _materialize_one(
        self, registry: BaseRegistry, task: MaterializationTask, **kwargs: Any
    ) -> LocalMaterializationJob:
        reason = unsupported_reason(self.repo_config, task.feature_view)
        if reason is None:
            context = self.get_execution_context(registry, task)
            builder = LocalFeatureBuilder(registry, task, backend=PandasBackend())
            columns = builder.get_column_info(task.feature_view)
            table = builder.build_source_node(task.feature_view).execute(context).data
            reason = unsupported_columns(table, task.feature_view, columns)
        if reason is not None:
            log.info("materialising %s with Feast's own writer: %s", task.feature_view.name, reason)
            return super()._materialize_one(registry, task, **kwargs)
        job_id = f"{task.feature_view.name}-{task.start_time}-{task.end_time}"
        if table.num_rows == 0:  # Feast's output node writes nothing either
            return LocalMaterializationJob(job_id=job_id, status=MaterializationJobStatus.SUCCEEDED)
        try:
            started = time.perf_counter()
            rows = latest_rows(
                table,
                task.feature_view,
                columns,
                self.repo_config.entity_key_serialization_version,
                key_order=store_kind(self.repo_config) == "sqlite",
            )
            del table
            write_online(self.repo_config, context, task.feature_view, rows, self.chunk_rows)
            log.info(
                "materialised %d rows of %s in %.1f s",
                rows.count,
                task.feature_view.name,
                time.perf_counter() - started,
            )
        except Exception as error:  # the provider re-raises it, as for Feast's own engine
            return LocalMaterializationJob(job_id=job_id, status=MaterializationJobStatus.ERROR, error=error)
        return LocalMaterializationJob(job_id=job_id, status=MaterializationJobStatus.SUCCEEDED)


def store_kind(config: RepoConfig) -> Literal["sqlite", "redis"] | None:
    online = config.online_store
    if online.type in SQLITE_TYPES:
        return "sqlite"
    if online.type in REDIS_TYPES:
        return "redis"
    return None


def unsupported_reason(config: RepoConfig, view: Any) -> str | None:
    """Why the fast path cannot reproduce Feast's write for this view and store (None: it can)."""
    kind = store_kind(config)
    online = config.online_store
    if kind is None:
        return f"online store type {online.type!r} has no fast writer (only sqlite and redis)"
    if kind == "sqlite" and (online.vector_enabled or online.enable_openai_compatible_store):
        return "SQLite vector / OpenAI-compatible columns are written by Feast only"
    if kind == "redis" and online.redis_type == "redis_cluster":
        return "Redis cluster is written by Feast only"
    if type(view) not in (FeatureView, BatchFeatureView):
        return f"{type(view).__name__} is written by Feast only"
    if getattr(view, "feature_transformation", None) or getattr(view, "aggregations", None):
        return "views with transformations or aggregations are written by Feast only"
    if getattr(view, "filter", None) or getattr(view, "enable_validation", False):
        return "views with a filter or validation are written by Feast only"
    if view.offline or not view.online or view.batch_source is None:
        return "only online-only views with a batch source have a fast writer"
    if getattr(view, "source_views", None):
        return "views derived from other views are written by Feast only"
    for field in view.features:
        if field.dtype not in ENCODINGS or getattr(field, "vector_index", False):
            return f"feature {field.name!r} has dtype {field.dtype}, which the fast writer does not encode"
    for entity in view.entity_columns:
        if entity.dtype.to_value_type() not in ENTITY_ENCODINGS:
            return f"join key {entity.name!r} has dtype {entity.dtype}, which the fast writer does not encode"
    if not view.entity_columns:
        return "entityless views are written by Feast only"
    if config.entity_key_serialization_version < 3:
        return "entity_key_serialization_version < 3 is written by Feast only"
    return None


def unsupported_columns(table: pa.Table, view: FeatureView, columns: ColumnInfo) -> str | None:
    """Offline columns whose conversion we could not reproduce exactly (None: all fine)."""
    timestamp_columns = [columns.timestamp_column, columns.created_timestamp_column]
    for name in filter(None, timestamp_columns):
        if name not in table.column_names or not pa.types.is_timestamp(table.schema.field(name).type):
            return f"column {name!r} is not a timestamp column in the offline data"
    for field in view.features:
        if field.name not in table.column_names:
            return f"feature column {field.name!r} is missing from the offline data"
        if not castable(table.schema.field(field.name).type, ENCODINGS[field.dtype].arrow_type):
            return f"feature column {field.name!r} is {table.schema.field(field.name).type}, not {field.dtype}"
    for name, value_type in join_key_types(view).items():
        if name not in table.column_names:
            return f"join key column {name!r} is missing from the offline data"
        if not castable(table.schema.field(name).type, ENTITY_ENCODINGS[value_type][0]):
            return f"join key column {name!r} is {table.schema.field(name).type}, not {value_type.name}"
    return None


def castable(source: pa.DataType, target: pa.DataType) -> bool:
    """Source types whose cast gives what Feast's per-value int()/float()/str() would give."""
    if pa.types.is_null(source):
        return True
    if pa.types.is_integer(target) or pa.types.is_floating(target):
        return pa.types.is_integer(source) or pa.types.is_floating(source)
    if pa.types.is_string(target):
        return pa.types.is_string(source) or pa.types.is_large_string(source) or pa.types.is_integer(source)
    return source == target


def join_key_types(view: FeatureView) -> dict[str, ValueType]:
    return {entity.name: entity.dtype.to_value_type() for entity in view.entity_columns}


@dataclass
class LatestRows:
    """The row Feast would write per entity; serialised chunk by chunk."""

    entity_keys: pa.BinaryArray
    features: dict[str, pa.Array]
    """Typed values (nulls and NaN as null), keyed by feature name."""
    dtypes: dict[str, Any]
    event_micros: np.ndarray
    created_micros: np.ndarray | None

    @property
    def count(self) -> int:
        return len(self.entity_keys)

    def values(self, name: str, start: int, size: int) -> pa.BinaryArray:
        """Serialised ValueProtos of one feature for a chunk (b"" for null, like ``ValueProto()``)."""
        return serialize_values(self.features[name].slice(start, size), self.dtypes[name])


def latest_rows(
    table: pa.Table, view: FeatureView, columns: ColumnInfo, key_version: int, *, key_order: bool
) -> LatestRows:
    """Keep the newest row per entity (event, then created timestamp), as Feast's dedup node does.

    With ``key_order`` the rows come in serialised-entity-key order (SQLite then appends to its
    primary key, never splits); otherwise in the offline store's order, so that a partition with
    one row per entity, the common case, is used as it is: no sort and no gather.
    """
    join_keys = list(join_key_types(view))
    for name in join_keys:
        if nulls := table.column(name).null_count:
            raise ValueError(f"join key column {name!r} has {nulls} nulls; Feast cannot key them either")
    entity_keys = serialize_entity_keys(table.select(join_keys), view, key_version)
    event = epoch_micros(table.column(columns.timestamp_column))
    created_name = columns.created_timestamp_column
    created = epoch_micros(table.column(created_name)) if created_name else None
    encoded = pc.dictionary_encode(entity_keys)
    chosen: np.ndarray | None = None
    if len(encoded.dictionary) < len(entity_keys):
        codes = encoded.indices.to_numpy()
        order = np.lexsort(([-created] if created is not None else []) + [-event, codes])  # stable: ties keep
        starts_entity = np.ones(len(order), dtype=bool)  # the offline store's order
        starts_entity[1:] = codes[order][1:] != codes[order][:-1]
        chosen = np.sort(order[starts_entity])
    if key_order:
        kept = entity_keys if chosen is None else entity_keys.take(chosen)
        by_key = pc.sort_indices(kept).to_numpy()
        chosen = by_key if chosen is None else chosen[by_key]

    def pick(values: Any) -> Any:
        return values if chosen is None else values.take(chosen)

    return LatestRows(
        entity_keys=pick(entity_keys),
        features={
            field.name: typed_values(pick(table.column(field.name)), ENCODINGS[field.dtype].arrow_type)
            for field in view.features
        },
        dtypes={field.name: field.dtype for field in view.features},
        event_micros=pick(event),
        created_micros=pick(created) if created is not None else None,
    )


def epoch_micros(column: pa.ChunkedArray) -> np.ndarray:
    """Microseconds since the epoch, floored like ``Timestamp.to_pydatetime`` (what Feast keeps)."""
    raw = column.cast(pa.int64()).to_numpy()
    unit = column.type.unit
    if unit == "s":
        return raw * 1_000_000
    if unit == "ms":
        return raw * 1_000
    if unit == "ns":
        return np.floor_divide(raw, 1_000)
    return raw


def typed_values(column: pa.ChunkedArray, arrow_type: pa.DataType) -> pa.Array:
    """The column in the feature's Arrow type, with NaN as null (Feast writes ``pd.isnull`` as null)."""
    array = column.combine_chunks()
    if array.type != arrow_type:
        array = pc.cast(array, options=pc.CastOptions(arrow_type, allow_float_truncate=True))
    if pa.types.is_floating(arrow_type) and len(array):
        array = pc.if_else(pc.is_nan(array), pa.scalar(None, arrow_type), array)
    return array


def binary_from_lengths(lengths: np.ndarray, data: np.ndarray) -> pa.BinaryArray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.BinaryArray.from_buffers(pa.binary(), len(lengths), [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def tagged_varints(tag: int, values: np.ndarray, present: np.ndarray) -> pa.BinaryArray:
    """``tag + varint(value)`` where present, ``b""`` elsewhere (protobuf's two's-complement varints)."""
    unsigned = values[present].astype(np.int64).view(np.uint64)
    size = np.ones(len(unsigned), dtype=np.int64)
    for shift in range(7, 64, 7):
        size += unsigned >= np.uint64(1 << shift)
    lengths = np.zeros(len(values), dtype=np.int64)
    lengths[present] = 1 + size
    starts = np.cumsum(lengths)[present] - lengths[present]
    data = np.empty(int(lengths.sum()), dtype=np.uint8)
    data[starts] = tag
    for index in range(10):
        more = size > index
        if not more.any():
            break
        byte = ((unsigned[more] >> np.uint64(7 * index)) & np.uint64(0x7F)).astype(np.uint8)
        byte |= np.where(size[more] > index + 1, 0x80, 0).astype(np.uint8)
        data[starts[more] + 1 + index] = byte
    return binary_from_lengths(lengths, data)


def tagged_fixed(tag: int, values: np.ndarray, present: np.ndarray) -> pa.BinaryArray:
    """``tag + little-endian bytes`` where present, ``b""`` elsewhere (double, float, bool)."""
    payload = np.ascontiguousarray(values[present]).view(np.uint8).reshape(int(present.sum()), values.dtype.itemsize)
    block = np.empty((payload.shape[0], payload.shape[1] + 1), dtype=np.uint8)
    block[:, 0] = tag
    block[:, 1:] = payload
    return binary_from_lengths(np.where(present, block.shape[1], 0), block.ravel())


def fixed_binary(values: np.ndarray) -> pa.BinaryArray:
    raw = np.ascontiguousarray(values)
    width = raw.dtype.itemsize
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(raw), [None, pa.py_buffer(raw.tobytes())])
    return fixed.cast(pa.binary())


def serialize_values(values: pa.Array, dtype: Any) -> pa.BinaryArray:
    """``ValueProto.SerializeToString()`` for every value, column-wise."""
    encoding = ENCODINGS[dtype]
    present = values.is_valid().to_numpy(zero_copy_only=False)
    if dtype == String:
        utf8 = values.cast(pa.binary())
        sizes = pc.fill_null(pc.binary_length(utf8), 0).to_numpy()
        prefix = tagged_varints(encoding.tag, sizes, present)
        return pc.fill_null(pc.binary_join_element_wise(prefix, utf8, b""), b"")
    if dtype == Bool:
        numbers = pc.fill_null(values, False).to_numpy(zero_copy_only=False).astype(np.uint8)
        return tagged_fixed(encoding.tag, numbers, present)
    numbers = pc.fill_null(values, 0).to_numpy()
    if dtype in (Int64, Int32):
        return tagged_varints(encoding.tag, numbers.astype(np.int64), present)
    return tagged_fixed(encoding.tag, numbers.astype(numbers.dtype.newbyteorder("<")), present)


def serialize_entity_keys(table: pa.Table, view: FeatureView, version: int) -> pa.BinaryArray:
    """``key_encoding_utils.serialize_entity_key`` (version 3) for every row, column-wise."""
    types = join_key_types(view)
    names = sorted(types)
    header = struct.pack("<I", len(names)) + b"".join(
        struct.pack("<II", ValueType.STRING.value, len(name.encode())) + name.encode() for name in names
    )
    pieces: list[Any] = [header]
    for name in names:
        arrow_type, layout = ENTITY_ENCODINGS[types[name]]
        column = typed_values(table.column(name), arrow_type)
        if layout is None:
            utf8 = column.cast(pa.binary())
            sizes = pc.binary_length(utf8).to_numpy().astype("<u4")
            pieces += [fixed_binary(np.full(len(utf8), types[name].value, dtype="<u4")), fixed_binary(sizes), utf8]
        else:
            width = np.dtype(layout).itemsize
            pieces += [struct.pack("<II", types[name].value, width), fixed_binary(column.to_numpy().astype(layout))]
    if len(table) == 0:
        return pa.array([], pa.binary())
    return pc.binary_join_element_wise(*pieces, b"")


def write_online(
    config: RepoConfig, context: ExecutionContext, view: FeatureView, rows: LatestRows, chunk: int
) -> None:
    if store_kind(config) == "sqlite":
        write_sqlite(config, view, rows, chunk)
    else:
        write_redis(config, context, view, rows, chunk)


# ---- SQLite ------------------------------------------------------------------------------------


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
    """Feast's upsert, but one multi-row VALUES per ``entities`` entities and their features.

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
        "created_ts = excluded.created_ts"
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


# ---- Redis -------------------------------------------------------------------------------------


def timestamp_protos(micros: np.ndarray) -> tuple[pa.BinaryArray, np.ndarray]:
    """``Timestamp.FromDatetime(...).SerializeToString()`` and total nanoseconds, per row."""
    seconds, micro = np.divmod(micros, 1_000_000)
    nanos = micro * 1_000
    serialized = pc.binary_join_element_wise(
        tagged_varints(TAG_SECONDS, seconds, seconds != 0), tagged_varints(TAG_NANOS, nanos, nanos != 0), b""
    )
    return serialized, seconds * 1_000_000_000 + nanos


def stored_nanos(previous: list[Any]) -> np.ndarray:
    """Total nanoseconds of the ``_ts`` values already in Redis (0 where none), decoded once per value."""
    from google.protobuf.timestamp_pb2 import Timestamp

    decoded: dict[bytes, int] = {}
    for raw in set(previous) - {None}:
        stamp = Timestamp()
        stamp.ParseFromString(raw)
        decoded[raw] = stamp.seconds * 1_000_000_000 + stamp.nanos
    return np.array([decoded.get(raw, 0) if raw else 0 for raw in previous], dtype=np.int64)


def send_commands(connection: Any, commands: pa.BinaryArray) -> None:
    """Send pre-encoded RESP commands in one write, on redis-py's connection (auth, db, TLS)."""
    if len(commands):
        first = commands.offset
        offsets = np.frombuffer(commands.buffers()[1], dtype=np.int32)[first : first + len(commands) + 1]
        data = commands.buffers()[2].slice(offsets[0], offsets[-1] - offsets[0])
        # No health-check PING: its reply would be read among the replies still in flight.
        connection.send_packed_command([memoryview(data)], check_health=False)


def read_replies(connection: Any, count: int) -> list[Any]:
    """Exactly ``count`` replies, with nothing else in flight on the connection.

    A synthetic array header in front of them makes hiredis build the whole list in one C call:
    per-reply ``gets`` (or redis-py's ``read_response``) costs more than building the commands.
    """
    import hiredis

    reader = hiredis.Reader()
    reader.feed(b"*%d\r\n" % count)
    replies = reader.gets()
    while replies is False:
        data = connection._sock.recv(1 << 20)
        if not data:
            raise ConnectionError(f"Redis closed the connection with replies to {count} commands due")
        reader.feed(data)
        replies = reader.gets()
    errors = [reply for reply in replies if isinstance(reply, hiredis.ReplyError)]
    if errors:
        raise RuntimeError(f"Redis rejected {len(errors)} of {count} commands, the first with: {errors[0]}")
    return replies


class Acknowledgements:
    """Counts the replies to HSET and EXPIRE without parsing them.

    Redis answers each with one line, an integer (``:n``) or an error (``-...``), so counting
    newlines is exact. ``drain(wait=False)`` takes only what has arrived, so that replies never
    pile up in Redis while we keep sending.
    """

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.due = 0
        self.line_start = True

    def drain(self, *, wait: bool) -> None:
        import select

        sock = self.connection._sock
        while self.due > 0 and (wait or select.select([sock], [], [], 0)[0]):
            data = sock.recv(1 << 20)
            if not data:
                raise ConnectionError(f"Redis closed the connection with {self.due} write replies due")
            lines = (b"\n" if self.line_start else b"") + data
            error = lines.find(b"\n-")
            if error >= 0:
                line = lines[error + 2 :].split(b"\r\n", 1)[0].decode(errors="replace")
                raise RuntimeError(f"Redis rejected a write: {line}")
            self.due -= data.count(b"\n")
            self.line_start = data.endswith(b"\n")
        if self.due < 0:
            raise RuntimeError(f"Redis sent {-self.due} more write replies than commands were sent")


@dataclass(frozen=True)
class RedisLayout:
    """The constant parts of Feast's Redis layout for one view: key suffix, field names, TTL."""

    project: bytes
    ts_field: bytes
    fields: list[tuple[bytes, str]]
    """(mmh3 field name, feature name) in the view's feature order, as Feast fills its HSET."""
    ttl: int | None


def write_redis(config: RepoConfig, context: ExecutionContext, view: FeatureView, rows: LatestRows, chunk: int) -> None:
    """Feast's Redis write: look up every key's stored ``_ts``, then HSET (and EXPIRE) only the
    rows strictly newer than it or with none stored, as Feast does per batch.
    """
    from feast.infra.online_stores.redis import RedisOnlineStore

    online = config.online_store
    if not isinstance(context.online_store, RedisOnlineStore):
        raise TypeError(f"online store type {online.type!r} is configured but Feast built {context.online_store!r}")
    pool = context.online_store._get_client(online).connection_pool
    name = compute_versioned_name(view, config.registry.enable_online_feature_view_versioning)
    layout = RedisLayout(
        project=config.project.encode(),
        ts_field=f"_ts:{name}".encode(),
        fields=[(_mmh3(f"{name}:{field.name}"), field.name) for field in view.features],
        ttl=online.key_ttl_seconds,
    )
    keys = pc.binary_join_element_wise(rows.entity_keys, layout.project, b"")
    stamps, new_nanos = timestamp_protos(rows.event_micros)
    lookups, writes = pool.get_connection(), pool.get_connection()
    try:
        acknowledgements = Acknowledgements(writes)
        send_commands(lookups, hget_commands(layout, keys.slice(0, chunk)))
        for start in range(0, rows.count, chunk):
            commands = hset_commands(layout, rows, keys, stamps, start, chunk)  # while Redis looks up
            seen = stored_nanos(read_replies(lookups, len(commands)))
            # The next chunk's lookups go out before this chunk's writes, so Redis always has both
            # queued; each entity is in one chunk only, so its check still precedes its write.
            send_commands(lookups, hget_commands(layout, keys.slice(start + chunk, chunk)))
            newer = commands.filter(pa.array(~((seen != 0) & (new_nanos[start : start + chunk] <= seen))))
            acknowledgements.due += len(newer) * (2 if layout.ttl else 1)
            send_commands(writes, newer)
            acknowledgements.drain(wait=False)
        acknowledgements.drain(wait=True)
    except BaseException:
        lookups.disconnect()  # unread replies would corrupt the next command on them
        writes.disconnect()
        raise
    finally:
        pool.release(lookups)
        pool.release(writes)


def resp(*pieces: bytes | pa.Array) -> pa.BinaryArray:
    """One RESP command per row: ``bytes`` pieces go as they are, arrays as bulk strings.

    Adjacent constants are merged first, as ``binary_join_element_wise`` costs per piece.
    """
    merged: list[Any] = [b""]
    for piece in pieces:
        if isinstance(piece, bytes):
            merged[-1] += piece
        else:
            merged[-1] += b"$"
            merged += [pc.binary_length(piece).cast(pa.string()).cast(pa.binary()), b"\r\n", piece, b"\r\n"]
    return pc.binary_join_element_wise(*merged, b"")


def resp_constant(*parts: bytes) -> bytes:
    return b"".join(b"$%d\r\n%s\r\n" % (len(part), part) for part in parts)


def hget_commands(layout: RedisLayout, keys: pa.BinaryArray) -> pa.BinaryArray:
    """``HGET key _ts:<view>``: Feast asks with HMGET; one bulk reply per key is cheaper to parse."""
    return resp(b"*3\r\n" + resp_constant(b"HGET"), keys, resp_constant(layout.ts_field))


def hset_commands(
    layout: RedisLayout, rows: LatestRows, keys: pa.BinaryArray, stamps: pa.BinaryArray, start: int, size: int
) -> pa.BinaryArray:
    """Feast's ``HSET key _ts:<view> <Timestamp> <mmh3 field> <ValueProto> ...`` (+ ``EXPIRE``) per row."""
    key = keys.slice(start, size)
    pieces: list[Any] = [b"*%d\r\n" % (2 + 2 * (len(layout.fields) + 1)) + resp_constant(b"HSET"), key]
    pieces += [resp_constant(layout.ts_field), stamps.slice(start, size)]
    for field_hash, feature in layout.fields:
        pieces += [resp_constant(field_hash), rows.values(feature, start, size)]
    if layout.ttl:
        pieces += [b"*3\r\n" + resp_constant(b"EXPIRE"), key, resp_constant(str(layout.ttl).encode())]
    return resp(*pieces)
