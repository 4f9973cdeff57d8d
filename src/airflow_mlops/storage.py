"""The data lake the pipelines read and write: raw partitions, quarantine, offline features, predictions,
training sets and reports, all addressed by keys relative to one root: a local folder or an S3 prefix.

Every write of one key is atomic (local: temporary file, then rename; S3: a single PUT), so a failed
task never leaves a half-written file behind, and writing a key again replaces it, which makes
re-runs idempotent. What a whole folder swap guarantees differs; see ``replace_folder``.
"""

from __future__ import annotations

import io
import os
import posixpath
import shutil
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

AWS_CONN_ID = "aws_default"


class DataError(ValueError):
    """Input data that cannot be used; the message names the file and what is wrong with it."""


class Storage(ABC):
    """What the pipelines need from a data lake. Keys are ``/``-separated and relative to the root;
    a key names a file, or a folder when files exist below it."""

    @property
    @abstractmethod
    def uri(self) -> str:
        """The root, as a URI."""

    @abstractmethod
    def location(self, key: str) -> str:
        """Where ``key`` lives (a local path or an ``s3://`` URI): for messages, XComs and lineage tags."""

    @abstractmethod
    def key_of(self, location: str) -> str:
        """The key of a :meth:`location` of this storage; :class:`DataError` for one outside the root."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def check_access(self) -> str:
        """Reach the root (for a connection's Test button); says what was reached, raises naming what failed."""

    @abstractmethod
    def files(self, prefix: str, suffix: str = "") -> list[str]:
        """Keys of the files below ``prefix``, sorted; hidden files and anything in a hidden folder (``.name``)
        left out; empty when none."""

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> str:
        """Write (or replace) one file atomically; returns its location."""

    @abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """The file's content; :class:`FileNotFoundError` naming the location when there is none."""

    @abstractmethod
    def replace_folder(self, key: str, files: dict[str, bytes]) -> None:
        """Make folder ``key`` hold exactly ``files`` (name to content)."""

    @abstractmethod
    def move(self, src: str, dst: str) -> None:
        """Move a file or folder, replacing whatever ``dst`` held."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove a file or a folder and everything below it; nothing to remove is not an error."""

    def write_parquet(self, key: str, frame: pd.DataFrame) -> str:
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return self.write_bytes(key, buffer.getvalue())


@dataclass(frozen=True)
class LocalStorage(Storage):
    root: Path

    @property
    def uri(self) -> str:
        return self.root.as_uri()

    def path(self, key: str) -> Path:
        resolved = (self.root / key).resolve()
        if not resolved.is_relative_to(self.root.resolve()):
            raise DataError(f"storage key {key!r} escapes the storage root {self.root}")
        return resolved

    def location(self, key: str) -> str:
        return str(self.path(key))

    def key_of(self, location: str) -> str:
        resolved = Path(location.removeprefix("file://")).resolve()
        if not resolved.is_relative_to(self.root.resolve()):
            raise DataError(f"{location} is not inside the storage root {self.root}")
        return resolved.relative_to(self.root.resolve()).as_posix()

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def check_access(self) -> str:
        if not self.root.is_dir():
            raise FileNotFoundError(f"data lake root {self.root} is not a folder")
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise PermissionError(f"data lake root {self.root} is not writable by this process")
        return f"data lake at {self.root} is a writable folder"

    def files(self, prefix: str, suffix: str = "") -> list[str]:
        base = self.path(prefix)
        if not base.is_dir():
            return []
        root = self.root.resolve()
        found = []
        for folder, subfolders, names in os.walk(base):
            # Hidden folders are a killed replace_folder's staging (.name.<hex>.tmp) or trash (.old).
            subfolders[:] = [name for name in subfolders if not name.startswith(".")]
            here = Path(folder).relative_to(root)
            visible = ((here / name).as_posix() for name in names if not name.startswith("."))
            found += [key for key in visible if key.endswith(suffix)]
        return sorted(found)

    def write_bytes(self, key: str, data: bytes) -> str:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        return str(target)

    def read_bytes(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def replace_folder(self, key: str, files: dict[str, bytes]) -> None:
        """Written aside first, then swapped in with renames: readers see the old folder or the new one."""
        target = self.path(key)
        staging = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        staging.mkdir(parents=True)
        for name, data in files.items():
            (staging / name).write_bytes(data)
        if target.exists():
            trash = target.with_name(f".{target.name}.{uuid.uuid4().hex}.old")
            os.replace(target, trash)
            os.replace(staging, target)
            shutil.rmtree(trash)
        else:
            os.replace(staging, target)

    def move(self, src: str, dst: str) -> None:
        source, target = self.path(src), self.path(dst)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        os.replace(source, target)

    def delete(self, key: str) -> None:
        target = self.path(key)
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


@dataclass(frozen=True)
class S3Storage(Storage):
    """A prefix of an S3 bucket, through the Amazon provider's ``S3Hook`` (endpoint, region and keys come
    from the ``aws_conn_id`` connection, so any S3-compatible server works the same way as AWS).

    S3 has no rename: ``replace_folder`` and ``move`` write every new object before deleting any old one.
    Each object is still written atomically, so readers never see a partial file.
    """

    bucket: str
    prefix: str = ""
    aws_conn_id: str = AWS_CONN_ID

    @cached_property
    def hook(self) -> Any:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(aws_conn_id=self.aws_conn_id)

    @cached_property
    def client(self) -> Any:
        return self.hook.get_conn()

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def object_key(self, key: str) -> str:
        """The S3 object key of a storage key; keys that leave the prefix are refused."""
        normal = posixpath.normpath(key.strip("/")) if key.strip("/") else "."
        if normal == ".." or normal.startswith("../") or posixpath.isabs(key):
            raise DataError(f"storage key {key!r} escapes the storage root {self.uri}")
        return "/".join(part for part in (self.prefix, "" if normal == "." else normal) if part)

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.object_key(key)}"

    def key_of(self, location: str) -> str:
        if not location.startswith(f"{self.uri}/"):
            raise DataError(f"{location} is not inside the storage root {self.uri}")
        return location.removeprefix(f"{self.uri}/")

    def _below(self, object_key: str) -> Iterator[str]:
        """Every object key under the folder ``object_key`` (hidden ones too)."""
        folder = f"{object_key}/" if object_key else ""
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=folder):
            for item in page.get("Contents", []):
                yield item["Key"]

    def _is_file(self, object_key: str) -> bool:
        return self.hook.head_object(object_key, self.bucket) is not None

    def _objects(self, key: str) -> list[str]:
        """The object ``key`` names: itself when it is a file, else everything below it."""
        object_key = self.object_key(key)
        return [object_key] if object_key and self._is_file(object_key) else list(self._below(object_key))

    def _relative(self, object_key: str) -> str:
        return object_key.removeprefix(f"{self.prefix}/") if self.prefix else object_key

    def exists(self, key: str) -> bool:
        object_key = self.object_key(key)
        return next(self._below(object_key), None) is not None or (bool(object_key) and self._is_file(object_key))

    def check_access(self) -> str:
        reply = self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.object_key(""), MaxKeys=1)
        return f"data lake at {self.uri} is listable ({reply.get('KeyCount', 0)} object(s) seen)"

    def files(self, prefix: str, suffix: str = "") -> list[str]:
        return sorted(
            relative
            for relative in map(self._relative, self._below(self.object_key(prefix)))
            if relative.endswith(suffix) and not any(part.startswith(".") for part in relative.split("/"))
        )

    def write_bytes(self, key: str, data: bytes) -> str:
        self.client.put_object(Bucket=self.bucket, Key=self.object_key(key), Body=data)
        return self.location(key)

    def read_bytes(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            reply = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                raise FileNotFoundError(f"{self.location(key)} does not exist") from exc
            raise
        data: bytes = reply["Body"].read()
        return data

    def replace_folder(self, key: str, files: dict[str, bytes]) -> None:
        """Write every new file (one PUT each, in the order given), then delete the files the folder held
        that are not among them.

        A reader listing the folder meanwhile can briefly see stale files next to complete new ones,
        never a partial file; a failure in between leaves stale files that the next replace removes.
        Files of the same name (the pipelines write one ``part.parquet`` per partition) are swapped
        by a single atomic PUT.
        """
        folder = self.object_key(key)
        old = set(self._below(folder))
        new = {f"{folder}/{name}" for name in files}
        for name, data in files.items():
            self.client.put_object(Bucket=self.bucket, Key=f"{folder}/{name}", Body=data)
        self.hook.delete_objects(self.bucket, sorted(old - new))

    def move(self, src: str, dst: str) -> None:
        """Copy (server side), then delete what ``dst`` held that was not copied, then delete ``src``.

        Not atomic: an interrupted move leaves the source in place, so running it again completes it.
        """
        source_key, target_key = self.object_key(src), self.object_key(dst)
        sources = self._objects(src)
        if not sources:
            raise FileNotFoundError(f"{self.location(src)} does not exist")
        stale = set(self._objects(dst))
        copied = []
        for object_key in sources:
            target = target_key + object_key.removeprefix(source_key)
            copy = {"Bucket": self.bucket, "Key": object_key}
            self.client.copy_object(Bucket=self.bucket, Key=target, CopySource=copy)
            copied.append(target)
        self.hook.delete_objects(self.bucket, sorted(stale - set(copied)))
        self.hook.delete_objects(self.bucket, sources)

    def delete(self, key: str) -> None:
        self.hook.delete_objects(self.bucket, self._objects(key))


def open_storage(uri: str, aws_conn_id: str = AWS_CONN_ID) -> Storage:
    """Storage for a root URI: ``s3://bucket/prefix`` (through ``aws_conn_id``), ``file:///abs/path``
    or a plain local path."""
    if uri.startswith("s3://"):
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        if not bucket:
            raise ValueError(f"storage root {uri!r} names no bucket: expected s3://<bucket>/<prefix>")
        return S3Storage(bucket, prefix.strip("/"), aws_conn_id)
    if uri.startswith("file://"):
        return LocalStorage(Path(uri.removeprefix("file://")))
    if "://" in uri:
        raise ValueError(f"unsupported storage root {uri!r}: expected s3://, file:// or a local path")
    return LocalStorage(Path(uri))


def read_parquet(storage: Storage, key: str) -> pd.DataFrame:
    """One parquet file; :class:`DataError` naming its location when it is missing or cannot be decoded.

    Only the file is blamed: an S3 timeout, a 5xx or a throttling reply while fetching it propagates as it
    is, so the task retries instead of failing for good on data that is fine.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        # A local file is memory-mapped; an object is fetched once and read without another copy.
        if isinstance(storage, LocalStorage):
            source = pa.memory_map(str(storage.path(key)))
        else:
            source = pa.BufferReader(storage.read_bytes(key))
    except FileNotFoundError as exc:
        raise DataError(f"cannot read {storage.location(key)}: it does not exist") from exc
    try:
        table = pq.read_table(source)
        # Column by column, each Arrow buffer freed once converted: peak memory ~ one copy of the data.
        return table.to_pandas(split_blocks=True, self_destruct=True)
    except MemoryError:
        raise
    except Exception as exc:  # the bytes are all here: pyarrow raises several unrelated types for a bad file
        raise DataError(f"cannot read {storage.location(key)}: {type(exc).__name__}: {exc}") from exc


def read_partition(storage: Storage, key: str) -> pd.DataFrame:
    """Read every parquet file of a partition folder into one frame.

    Raises :class:`DataError` naming the folder or file for a missing, empty or unreadable partition.
    """
    files = storage.files(key, ".parquet")
    if not files:
        raise DataError(f"partition {storage.location(key)} has no parquet files (not landed yet, or empty)")
    frames = [read_parquet(storage, file) for file in files]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
