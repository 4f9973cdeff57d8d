"""Feast's Redis online store, written the way Feast lays it out: one hash per entity, pipelined, with an
"older never overwrites newer" check per entity. Called by :mod:`airflow_mlops.feature_store.online_writer`.

Writers of one feature view take turns (a Redis lock that expires if its holder dies): the check and the
write are separate round trips, so two interleaved writers could otherwise put older values back. Every
reply is awaited with :data:`REPLY_TIMEOUT_S`, so a Redis that stops answering fails the task instead of
hanging it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from feast import FeatureView
from feast.infra.compute_engines.dag.context import ExecutionContext
from feast.infra.online_stores.helpers import _mmh3, compute_versioned_name
from feast.repo_config import RepoConfig

from airflow_mlops.feature_store.online_writer import (
    LatestRows,
    tagged_varints,
)

REPLY_TIMEOUT_S = 60.0
LOCK_LEASE_S = 60.0  # renewed after every chunk; a dead writer's lock frees itself after this

# google.protobuf.Timestamp: seconds (field 1) and nanos (field 2), both varints.
TAG_SECONDS, TAG_NANOS = 0x08, 0x10


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
    """Feast's Redis write: look up every key's stored ``_ts``, then HSET (and EXPIRE) only the rows at
    least as new as it (a re-run of the same day rewrites its values) or with none stored.
    """
    from feast.infra.online_stores.redis import RedisOnlineStore

    online = config.online_store
    if not isinstance(context.online_store, RedisOnlineStore):
        raise TypeError(f"online store type {online.type!r} is configured but Feast built {context.online_store!r}")
    client = context.online_store._get_client(online)
    pool = client.connection_pool
    for setting in ("socket_timeout", "socket_connect_timeout"):  # the lock's commands too
        if pool.connection_kwargs.get(setting) is None:
            pool.connection_kwargs[setting] = REPLY_TIMEOUT_S
    name = compute_versioned_name(view, config.registry.enable_online_feature_view_versioning)
    layout = RedisLayout(
        project=config.project.encode(),
        ts_field=f"_ts:{name}".encode(),
        fields=[(_mmh3(f"{name}:{field.name}"), field.name) for field in view.features],
        ttl=online.key_ttl_seconds,
    )
    keys = pc.binary_join_element_wise(rows.entity_keys, layout.project, b"")
    stamps, new_nanos = timestamp_protos(rows.event_micros)
    lock = client.lock(
        f"airflow_mlops:write:{config.project}:{name}",
        timeout=LOCK_LEASE_S,
        blocking_timeout=10 * LOCK_LEASE_S,
        thread_local=False,
    )
    if not lock.acquire():
        raise TimeoutError(f"another writer held the online-store lock of view '{name}' for {10 * LOCK_LEASE_S:.0f} s")
    try:
        write_locked(pool, layout, rows, keys, stamps, new_nanos, chunk, lock.reacquire)
    finally:
        with contextlib.suppress(Exception):  # expired (a stalled write) or Redis gone: the lease ends by itself
            lock.release()


def write_locked(
    pool: Any,
    layout: RedisLayout,
    rows: LatestRows,
    keys: pa.BinaryArray,
    stamps: pa.BinaryArray,
    new_nanos: np.ndarray,
    chunk: int,
    renew: Any,
) -> None:
    lookups, writes = pool.get_connection(), pool.get_connection()
    try:
        for connection in (lookups, writes):
            connection.connect()
            connection._sock.settimeout(REPLY_TIMEOUT_S)
        acknowledgements = Acknowledgements(writes)
        send_commands(lookups, hget_commands(layout, keys.slice(0, chunk)))
        for start in range(0, rows.count, chunk):
            commands = hset_commands(layout, rows, keys, stamps, start, chunk)  # while Redis looks up
            seen = stored_nanos(read_replies(lookups, len(commands)))
            # The next chunk's lookups go out before this chunk's writes, so Redis always has both
            # queued; each entity is in one chunk only, so its check still precedes its write.
            send_commands(lookups, hget_commands(layout, keys.slice(start + chunk, chunk)))
            newer = commands.filter(pa.array(~((seen != 0) & (new_nanos[start : start + chunk] < seen))))
            acknowledgements.due += len(newer) * (2 if layout.ttl else 1)
            send_commands(writes, newer)
            acknowledgements.drain(wait=False)
            renew()
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
