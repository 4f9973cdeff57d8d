"""The data lake the pipelines read and write: raw partitions, quarantine, offline features, predictions,
training sets and reports, all addressed by keys relative to one root.

Writes are atomic (temporary file, then rename), so a failed task never leaves a half-written
partition behind, and writing a key again replaces it, which makes re-runs idempotent.
"""

from __future__ import annotations

import io
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd


class DataError(ValueError):
    """Input data that cannot be used; the message names the file and what is wrong with it."""


def partition(prefix: str, ds: date | str) -> str:
    """Key of the daily partition folder for ``ds`` under ``prefix`` (hive style, ``date=YYYY-MM-DD``)."""
    day = ds.isoformat() if isinstance(ds, date) else ds
    return f"{prefix.rstrip('/')}/date={day}"


@dataclass(frozen=True)
class LocalStorage:
    root: Path

    @property
    def uri(self) -> str:
        return self.root.as_uri()

    def path(self, key: str) -> Path:
        resolved = (self.root / key).resolve()
        if not resolved.is_relative_to(self.root.resolve()):
            raise DataError(f"storage key {key!r} escapes the storage root {self.root}")
        return resolved

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def files(self, prefix: str, suffix: str = "") -> list[str]:
        """Keys of the files below ``prefix``, sorted; empty when the prefix does not exist."""
        base = self.path(prefix)
        if not base.is_dir():
            return []
        return sorted(
            str(p.relative_to(self.root.resolve()))
            for p in base.rglob(f"*{suffix}")
            if p.is_file() and not p.name.startswith(".")
        )

    def write_bytes(self, key: str, data: bytes) -> str:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        return target.as_uri()

    def read_bytes(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def write_parquet(self, key: str, frame: pd.DataFrame) -> str:
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return self.write_bytes(key, buffer.getvalue())

    def replace_folder(self, key: str, files: dict[str, bytes]) -> None:
        """Make folder ``key`` hold exactly ``files``: written aside first, then swapped in."""
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
        """Move a file or folder, replacing whatever ``dst`` held."""
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


Storage = LocalStorage


def open_storage(uri: str) -> Storage:
    """Storage for a root URI: ``file:///abs/path`` or a plain local path."""
    if uri.startswith("file://"):
        return LocalStorage(Path(uri.removeprefix("file://")))
    if "://" in uri:
        raise ValueError(f"unsupported storage root {uri!r}: expected a local path or file:// URI")
    return LocalStorage(Path(uri))


def read_partition(storage: Storage, key: str) -> pd.DataFrame:
    """Read every parquet file of a partition folder into one frame.

    Raises :class:`DataError` naming the folder or file for a missing, empty or unreadable partition.
    """
    files = storage.files(key, ".parquet")
    if not files:
        raise DataError(f"partition {storage.path(key)} has no parquet files (not landed yet, or empty)")
    frames = []
    for file in files:
        try:
            frames.append(pd.read_parquet(io.BytesIO(storage.read_bytes(file))))
        except Exception as exc:  # pyarrow raises several unrelated types for a corrupt file
            raise DataError(f"cannot read {storage.path(file)}: {type(exc).__name__}: {exc}") from exc
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
