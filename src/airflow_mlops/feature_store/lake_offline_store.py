"""Feast's DuckDB offline store, able to read the data lake's offline partitions on S3 with no extra download.

DuckDB reads ``s3://`` only through its ``httpfs`` extension, which it downloads on first use; workers in a
closed network cannot. Here an ``s3://`` parquet source is opened as a pyarrow dataset (pyarrow ships its own
S3 client) and handed to DuckDB as an Arrow scan, so DuckDB still runs the point-in-time joins and
materialisation queries, with column projection and filters pushed down to the parquet files. Endpoint,
region and keys come from the Airflow AWS connection ``aws_conn_id``, the one the lake's ``S3Storage`` uses.
Local sources are read exactly as Feast's DuckDB store reads them.

Select it in the ``feast_default`` connection::

    "offline_store": {
        "type": "airflow_mlops.feature_store.lake_offline_store.LakeOfflineStore",
        "aws_conn_id": "aws_default"
    }
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pandas as pd
from feast.data_source import DataSource
from feast.feature_view import FeatureView
from feast.infra.offline_stores.duckdb import (
    DuckDBOfflineStore,
    DuckDBOfflineStoreConfig,
    _read_data_source,
    _write_data_source,
)
from feast.infra.offline_stores.file_source import FileSource
from feast.infra.offline_stores.ibis import (
    get_historical_features_ibis,
    pull_all_from_table_or_query_ibis,
    pull_latest_from_table_or_query_ibis,
)
from feast.infra.offline_stores.offline_store import RetrievalJob
from feast.infra.registry.base_registry import BaseRegistry
from feast.repo_config import RepoConfig
from pydantic import StrictStr

from airflow_mlops.storage import AWS_CONN_ID


class LakeOfflineStoreConfig(DuckDBOfflineStoreConfig):
    type: StrictStr = "airflow_mlops.feature_store.lake_offline_store.LakeOfflineStore"
    aws_conn_id: StrictStr = AWS_CONN_ID
    """Airflow AWS connection for ``s3://`` sources: keys, region and ``endpoint_url``."""


def s3_filesystem(aws_conn_id: str) -> Any:
    """pyarrow's S3 filesystem configured from an Airflow AWS connection, as ``S3Hook`` would use it."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from pyarrow import fs

    hook = S3Hook(aws_conn_id=aws_conn_id)
    credentials = hook.get_credentials()
    endpoint = hook.conn_config.get_service_endpoint_url("s3")
    return fs.S3FileSystem(
        access_key=credentials.access_key,
        secret_key=credentials.secret_key,
        session_token=credentials.token,
        region=hook.conn_region_name,
        endpoint_override=endpoint,
    )


def lake_reader(config: RepoConfig) -> Callable[[DataSource, str], Any]:
    """The data source reader the ibis-based Feast functions call, with ``s3://`` parquet handled here."""

    def read(data_source: DataSource, repo_path: str) -> Any:
        if not (isinstance(data_source, FileSource) and data_source.path.startswith("s3://")):
            return _read_data_source(data_source, repo_path)
        import ibis
        import pyarrow.dataset as ds

        filesystem = s3_filesystem(config.offline_store.aws_conn_id)
        dataset = ds.dataset(data_source.path.removeprefix("s3://"), filesystem=filesystem, format="parquet")
        return ibis.memtable(dataset)  # DuckDB scans the dataset lazily, with projection and filter pushdown

    return read


def _io(config: RepoConfig) -> dict[str, Any]:
    return {
        "data_source_reader": lake_reader(config),
        "data_source_writer": _write_data_source,
        "staging_location": config.offline_store.staging_location,
        "staging_location_endpoint_override": config.offline_store.staging_location_endpoint_override,
    }


class LakeOfflineStore(DuckDBOfflineStore):
    """The three reading entry points of the DuckDB store, with :func:`lake_reader` as the reader."""

    @staticmethod
    def pull_latest_from_table_or_query(
        config: RepoConfig,
        data_source: DataSource,
        join_key_columns: list[str],
        feature_name_columns: list[str],
        timestamp_field: str,
        created_timestamp_column: str | None,
        start_date: datetime,
        end_date: datetime,
    ) -> RetrievalJob:
        return pull_latest_from_table_or_query_ibis(
            config=config,
            data_source=data_source,
            join_key_columns=join_key_columns,
            feature_name_columns=feature_name_columns,
            timestamp_field=timestamp_field,
            created_timestamp_column=created_timestamp_column,
            start_date=start_date,
            end_date=end_date,
            **_io(config),
        )

    @staticmethod
    def get_historical_features(
        config: RepoConfig,
        feature_views: list[FeatureView],
        feature_refs: list[str],
        entity_df: pd.DataFrame | str,
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        filter_by_created_timestamp: bool = False,
    ) -> RetrievalJob:
        return get_historical_features_ibis(
            config=config,
            feature_views=feature_views,
            feature_refs=feature_refs,
            entity_df=entity_df,
            registry=registry,
            project=project,
            full_feature_names=full_feature_names,
            filter_by_created_timestamp=filter_by_created_timestamp,
            **_io(config),
        )

    @staticmethod
    def pull_all_from_table_or_query(
        config: RepoConfig,
        data_source: DataSource,
        join_key_columns: list[str],
        feature_name_columns: list[str],
        timestamp_field: str,
        created_timestamp_column: str | None = None,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
    ) -> RetrievalJob:
        return pull_all_from_table_or_query_ibis(
            config=config,
            data_source=data_source,
            join_key_columns=join_key_columns,
            feature_name_columns=feature_name_columns,
            timestamp_field=timestamp_field,
            created_timestamp_column=created_timestamp_column,
            start_date=start_date,
            end_date=end_date,
            **_io(config),
        )
