"""The data lake: a local folder or an S3 prefix, where raw data lands and every pipeline output goes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_mlops.hooks.base import ConnectionHook

if TYPE_CHECKING:
    from airflow_mlops.storage import Storage


class LakeHook(ConnectionHook):
    """Connection fields: ``root`` (a local path, ``file://`` URI, or ``s3://bucket/prefix``) and, for S3,
    ``aws_conn_id``: the AWS connection whose keys, region and ``endpoint_url`` reach the bucket."""

    conn_name_attr = "lake_conn_id"
    default_conn_name = "mlops_storage"
    conn_type = "mlops_lake"
    hook_name = "Data lake (airflow-mlops)"

    def __init__(self, lake_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(lake_conn_id, **kwargs)

    @property
    def root(self) -> str:
        return str(self.required("root"))

    def get_conn(self) -> Storage:
        from airflow_mlops.storage import AWS_CONN_ID, open_storage  # pandas: imported in tasks only

        return open_storage(self.root, str(self.extra.get("aws_conn_id") or AWS_CONN_ID))

    def check(self) -> str:
        return self.get_conn().check_access()
