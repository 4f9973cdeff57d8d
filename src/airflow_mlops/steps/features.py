"""Feast: the feature view comes from the spec, validated partitions are its offline source, and
materialisation copies a time window into the online store.

The Feast objects (entity, source, feature view) are derived from the spec, so the spec stays the
single declaration of the features; where the registry and stores live comes from configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd

from airflow_mlops import keys
from airflow_mlops.contracts import PublishedFeatures, TrainingSetRecord
from airflow_mlops.spec import PipelineSpec
from airflow_mlops.storage import DataError, Storage, read_partition


@dataclass(frozen=True)
class FeastTarget:
    """A Feast ``RepoConfig`` as a plain dict (project, registry, online_store, offline_store)."""

    config: dict[str, Any]

    @property
    def project(self) -> str:
        return str(self.config["project"])

    def store(self) -> Any:
        """The store; unless configured otherwise, materialisation uses our fast online writer."""
        from feast import FeatureStore, RepoConfig

        from airflow_mlops.feature_store.online_writer import ENGINE_TYPE

        defaults = {"provider": "local", "entity_key_serialization_version": 3, "batch_engine": {"type": ENGINE_TYPE}}
        return FeatureStore(config=RepoConfig(**{**defaults, **self.config}))

    def check_access(self) -> str:
        """Read the registry and open the online store (for a connection's Test button)."""
        store = self.store()
        views = store.list_feature_views()
        online = store.config.online_store
        kind = str(online.type).split(".")[-1].lower().removesuffix("onlinestore")  # "redis" or a class path
        if kind == "redis":
            from feast.infra.online_stores.redis import RedisOnlineStore

            RedisOnlineStore()._get_client(online).ping()  # Feast's own client, as materialisation uses it
        elif kind == "sqlite":  # Feast creates the file on its first write; its folder must be there
            import os
            import sqlite3
            from pathlib import Path

            path = Path(online.path)
            if path.exists():
                with sqlite3.connect(f"{path.as_uri()}?mode=rw", uri=True) as connection:
                    connection.execute("select 1")
            elif not os.access(path.parent, os.W_OK):
                raise FileNotFoundError(f"SQLite online store {path}: folder {path.parent} is missing or not writable")
        return (
            f"Feast project '{store.project}': registry read ({len(views)} feature view(s)), {kind} online store open"
        )


# How each declared dtype is stored in the offline store (pandas dtypes; nullable where a day may hold
# nulls, so an integer column with a missing value stays an integer column).
STORED_DTYPES = {
    "int64": "int64",
    "int32": "Int32",
    "float64": "float64",
    "float32": "float32",
    "bool": "boolean",
    "string": "string",
    "category": "string",
}


def definitions(spec: PipelineSpec, storage: Storage) -> list[Any]:
    from feast import Entity, FeatureView, Field, FileSource
    from feast.data_format import ParquetFormat
    from feast.types import Bool, Float32, Float64, Int32, Int64, String
    from feast.value_type import ValueType

    dtypes = {
        "int64": Int64,
        "int32": Int32,
        "float64": Float64,
        "float32": Float32,
        "bool": Bool,
        "string": String,
        "category": String,
    }
    key_type = ValueType.STRING if spec.data.entity_key_dtype == "string" else ValueType.INT64
    entity = Entity(name=spec.data.entity_key, join_keys=[spec.data.entity_key], value_type=key_type)
    source = FileSource(
        name=f"{spec.name}_{spec.features.feature_view}_source",
        path=storage.location(keys.offline_prefix(spec)),
        file_format=ParquetFormat(),
        timestamp_field=spec.data.timestamp_column,
    )
    view = FeatureView(
        name=spec.features.feature_view,
        entities=[entity],
        ttl=timedelta(days=spec.features.ttl_days),
        schema=[Field(name=c.name, dtype=dtypes[c.dtype]) for c in spec.data.features],
        source=source,
        online=True,
        tags={"pipeline": spec.name, "owner": spec.owner},
    )
    return [entity, view]


def apply(store: Any, spec: PipelineSpec, storage: Storage) -> None:
    """Register (or update) the spec's entity and feature view; idempotent."""
    store.apply(definitions(spec, storage))


def write_offline(storage: Storage, spec: PipelineSpec, ds: date, frame: pd.DataFrame) -> str:
    """Replace the day's offline partition with the validated rows: only the spec's columns, each cast to its
    declared type (an int32 landed one day and int64 the next must not give Feast two schemas; a pandas
    categorical is stored as the strings it holds)."""
    columns = [spec.data.entity_key, spec.data.timestamp_column, *spec.data.feature_names]
    key = keys.offline_partition(spec, ds)
    clean = frame[columns].copy()
    clean[spec.data.timestamp_column] = pd.to_datetime(clean[spec.data.timestamp_column], utc=True)
    clean = clean.astype(
        {spec.data.entity_key: STORED_DTYPES[spec.data.entity_key_dtype]}
        | {c.name: STORED_DTYPES[c.dtype] for c in spec.data.features}
    )
    data = clean.to_parquet(index=False)
    storage.replace_folder(key, {"part.parquet": data})
    return key


def materialize_window(spec: PipelineSpec, ds: date, newest: date) -> tuple[datetime, datetime]:
    """From ``ds - overlap_days`` (late rows of the days before) to the end of the newest partition.

    Feast writes the latest row per entity inside the window, and the SQLite online store overwrites
    without comparing timestamps; ending at the newest partition (not at ``ds``) means re-running an
    old day can never put older values back online.
    """
    start = datetime.combine(ds - timedelta(days=spec.features.overlap_days), datetime.min.time(), UTC)
    return start, datetime.combine(max(ds, newest) + timedelta(days=1), datetime.min.time(), UTC)


def offline_days(storage: Storage, spec: PipelineSpec) -> list[str]:
    """The days that have an offline partition, in order."""
    return sorted({keys.partition_day(key) for key in storage.files(keys.offline_prefix(spec), ".parquet")})


def newest_partition(storage: Storage, spec: PipelineSpec) -> date | None:
    days = offline_days(storage, spec)
    return date.fromisoformat(days[-1]) if days else None


def materialize(store: Any, storage: Storage, spec: PipelineSpec, ds: date) -> tuple[datetime, datetime]:
    """Copy the day's window into the online store; returns the window."""
    start, end = materialize_window(spec, ds, newest_partition(storage, spec) or ds)
    store.materialize(start_date=start, end_date=end, feature_views=[spec.features.feature_view])
    return start, end


def publish(store: Any, storage: Storage, spec: PipelineSpec, ds: date) -> PublishedFeatures:
    """The day's validated raw partition to the offline store, then into the online store.

    Registering the feature view first makes a new or changed spec take effect on its next publish.
    """
    frame = read_partition(storage, keys.raw_partition(spec, ds))
    key = write_offline(storage, spec, ds, frame)
    apply(store, spec, storage)
    start, end = materialize(store, storage, spec, ds)
    return {
        "pipeline": spec.name,
        "offline_partition": storage.location(key),
        "rows": len(frame),
        "feature_view": spec.features.feature_view,
        "start": start.isoformat(),
        "end": end.isoformat(),
    }


def training_entities(storage: Storage, spec: PipelineSpec, as_of: date) -> pd.DataFrame:
    """Labels that had *arrived* by ``as_of`` for snapshots inside the training window."""
    first = as_of - timedelta(days=spec.training.window_days - 1)
    frames = []
    for offset in range((as_of - first).days + 1):
        key = keys.labels_partition(spec, first + timedelta(days=offset))
        if storage.files(key, ".parquet"):
            frames.append(read_partition(storage, key))
    if not frames:
        where = storage.location(spec.data.labels_path)
        raise DataError(f"no label partitions under {where} between {first} and {as_of}")
    labels = pd.concat(frames, ignore_index=True)
    missing = {spec.data.entity_key, spec.data.timestamp_column, spec.data.label_column} - set(labels.columns)
    if missing:
        raise DataError(f"label partitions under {spec.data.labels_path} lack columns {sorted(missing)}")
    labels[spec.data.timestamp_column] = pd.to_datetime(labels[spec.data.timestamp_column], utc=True)
    return labels.drop_duplicates([spec.data.entity_key, spec.data.timestamp_column], keep="last")


def point_in_time_training_set(store: Any, spec: PipelineSpec, entities: pd.DataFrame) -> pd.DataFrame:
    """Join each label with the feature values known at its timestamp (Feast point-in-time join).

    Labels whose snapshot never passed validation get no features; they are dropped, not imputed.
    """
    refs = feature_refs(spec)
    frame = store.get_historical_features(entity_df=entities, features=refs).to_df()
    joined = frame.dropna(subset=spec.data.feature_names, how="all")
    order = [spec.data.entity_key, spec.data.timestamp_column, *spec.data.feature_names, spec.data.label_column]
    return joined[order].sort_values([spec.data.timestamp_column, spec.data.entity_key]).reset_index(drop=True)


def feature_refs(spec: PipelineSpec) -> list[str]:
    """Feast's names of the spec's features (``<feature_view>:<feature>``), in spec order."""
    return [f"{spec.features.feature_view}:{name}" for name in spec.data.feature_names]


def online_features(store: Any, spec: PipelineSpec, entity_ids: list[Any]) -> pd.DataFrame:
    refs = feature_refs(spec)
    cast = str if spec.data.entity_key_dtype == "string" else int
    rows = [{spec.data.entity_key: cast(i)} for i in entity_ids]
    return store.get_online_features(features=refs, entity_rows=rows).to_df()


def label_mean(spec: PipelineSpec, frame: pd.DataFrame) -> float | None:
    """The share of 1s (binary) or the mean label (regression) of a training set; ``None`` for classes, and
    for a label that is not numbers (which the training-set gate then names)."""
    label = frame[spec.data.label_column]
    if frame.empty or spec.data.task == "multiclass" or label.dtype.kind not in "biuf":
        return None
    return round(float(label.mean()), 4)


def build_training_set(store: Any, storage: Storage, spec: PipelineSpec, as_of: date) -> TrainingSetRecord:
    """The point-in-time training set for the labels that had arrived by ``as_of``, written to the lake."""
    from airflow_mlops.steps.registry import fingerprint

    entities = training_entities(storage, spec, as_of)
    frame = point_in_time_training_set(store, spec, entities)
    digest = fingerprint(frame)
    key = keys.training_set(spec, as_of, digest)
    storage.write_parquet(key, frame)
    return {
        "key": key,
        "as_of": as_of.isoformat(),
        "rows": len(frame),
        "labels": len(entities),
        "fingerprint": digest,
        "label_mean": label_mean(spec, frame),
    }
