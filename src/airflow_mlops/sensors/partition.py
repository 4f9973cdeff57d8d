"""Waiting for a day's partition in the data lake."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowSkipException

from airflow_mlops import keys
from airflow_mlops.operators.base import DailyOperator, bad_data_fails_fast

if TYPE_CHECKING:
    from airflow.sdk import Context


class PartitionSensor(DailyOperator, BaseSensorOperator):
    """Waits for the day's partition: ``raw`` as it lands (its completion marker, when the spec names one),
    or ``features`` once validated and published.

    A quarantined day never gets features, so waiting for it skips instead of timing out.
    """

    def __init__(self, *, dataset: Literal["raw", "features"], **kwargs: Any) -> None:
        kwargs.setdefault("mode", "reschedule")
        kwargs.setdefault("poke_interval", 60)
        kwargs.setdefault("timeout", 6 * 3600)
        super().__init__(**kwargs)
        self.dataset = dataset

    def poke(self, context: Context) -> bool:
        spec, storage, day = self.spec, self.storage, self.day(context)
        key = keys.raw_partition(spec, day) if self.dataset == "raw" else keys.offline_partition(spec, day)
        marker = keys.completion_marker(spec, day) if self.dataset == "raw" else None
        if marker is not None:
            self.log.info("looking for %s", storage.location(marker))
            return storage.exists(marker)
        self.log.info("looking for parquet files in %s", storage.location(key))
        if storage.files(key, ".parquet"):
            return True
        if self.dataset == "features" and storage.exists(keys.quarantine_partition(spec, day)):
            raise AirflowSkipException(f"{day} was quarantined by the validation gate: no features to use")
        return False

    def execute(self, context: Context) -> Any:
        with bad_data_fails_fast():
            return BaseSensorOperator.execute(self, context)
