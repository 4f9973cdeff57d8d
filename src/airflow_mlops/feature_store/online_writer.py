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

import logging
import struct
import time
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
from feast.infra.registry.base_registry import BaseRegistry
from feast.repo_config import FeastConfigBaseModel, RepoConfig
from feast.types import Bool, Float32, Float64, Int32, Int64, String
from feast.value_type import ValueType

ENGINE_TYPE = "airflow_mlops.feature_store.online_writer.FastOnlineWriteEngine"

log = logging.getLogger(__name__)

SQLITE_TYPES = ("sqlite", "feast.infra.online_stores.sqlite.SqliteOnlineStore")
REDIS_TYPES = ("redis", "feast.infra.online_stores.redis.RedisOnlineStore")

# ValueProto oneof fields (feast/protos/feast/types/Value.proto): tag byte = field number << 3 | wire type.
TAG_STRING, TAG_INT32, TAG_INT64, TAG_DOUBLE, TAG_FLOAT, TAG_BOOL = 0x12, 0x18, 0x20, 0x29, 0x35, 0x38


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

    type: Literal["airflow_mlops.feature_store.online_writer.FastOnlineWriteEngine"] = (
        "airflow_mlops.feature_store.online_writer.FastOnlineWriteEngine"
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
        from airflow_mlops.feature_store.sqlite_writer import write_sqlite

        write_sqlite(config, view, rows, chunk)
    else:
        from airflow_mlops.feature_store.redis_writer import write_redis

        write_redis(config, context, view, rows, chunk)
