"""What every operator of this distribution shares: the spec file it runs, the hooks that reach the lake,
MLflow and Feast, the date a run is about, and bad data failing for good instead of retrying.

Operators are thin adapters: a few hook calls, one step from :mod:`airflow_mlops.steps`, a small record
as XCom (keys, URIs, counts; never frames; typed in :mod:`airflow_mlops.contracts`). Heavy libraries are
imported inside ``execute`` only, so DAG files that use these operators parse in milliseconds.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_mlops.exceptions import BadDataFailure
from airflow_mlops.hooks import FeastHook, LakeHook, MlflowHook
from airflow_mlops.lineage import Dataset, TaskLineage, lake_dataset, operator_lineage
from airflow_mlops.notifications import Alert, send_alert
from airflow_mlops.spec import PipelineSpec, SpecError, load_spec

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlops.steps.features import FeastTarget
    from airflow_mlops.steps.registry import MlflowTarget
    from airflow_mlops.storage import Storage


def run_date(context: Context, explicit: str | None = None) -> date:
    """The day a run is about: an explicit date; else its logical date (under the factories' data-interval
    timetables, the complete day a scheduled run or a backfill covers); else, for a run triggered without
    one, the last complete day before it was asked for."""
    if explicit:
        try:
            return date.fromisoformat(str(explicit)[:10])
        except ValueError:
            raise AirflowFailException(f"as_of must be a date (YYYY-MM-DD), got {explicit!r}") from None
    logical = context.get("logical_date")
    if logical is not None:
        return logical.date()
    return context["dag_run"].run_after.date() - timedelta(days=1)


def last_complete_day(context: Context, explicit: str | None = None) -> date:
    """An explicit date, else the last day of the run's data interval: a weekly run trains on the labels
    known at the end of its week, and a backfill of the same interval reads the same days."""
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if explicit or start is None or end is None or end <= start:
        return run_date(context, explicit)
    return (end - timedelta(days=1)).date()


@contextmanager
def bad_data_fails_fast() -> Iterator[None]:
    """Bad data or a bad spec will not get better on retry: fail the task for good, with the message."""
    from airflow_mlops.storage import DataError

    try:
        yield
    except (DataError, SpecError) as exc:
        raise BadDataFailure(str(exc)) from exc


class PipelineOperator(BaseOperator):
    """Base for every step operator: the spec file and the connections it runs against."""

    template_fields: Collection[str] = ("spec_path",)
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        spec_path: str,
        lake_conn_id: str = LakeHook.default_conn_name,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        feast_conn_id: str = FeastHook.default_conn_name,
        storage_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if storage_conn_id is not None:
            warnings.warn("storage_conn_id is now lake_conn_id", DeprecationWarning, stacklevel=2)
            lake_conn_id = storage_conn_id
        self.spec_path = spec_path
        self.lake_conn_id = lake_conn_id
        self.mlflow_conn_id = mlflow_conn_id
        self.feast_conn_id = feast_conn_id

    @cached_property
    def spec(self) -> PipelineSpec:
        return load_spec(self.spec_path)

    @cached_property
    def storage(self) -> Storage:
        return LakeHook(self.lake_conn_id).get_conn()

    @cached_property
    def mlflow(self) -> MlflowTarget:
        return MlflowHook(self.mlflow_conn_id).get_conn()

    @cached_property
    def feast(self) -> FeastTarget:
        return FeastHook(self.feast_conn_id).get_conn()

    def execute(self, context: Context) -> Any:
        self.lineage = TaskLineage()
        with bad_data_fails_fast():
            return self.run(context)

    def run(self, context: Context) -> Any:
        raise NotImplementedError

    def in_lake(self, key: str, **facets: Any) -> Dataset:
        """A file or folder of the lake as an OpenLineage dataset, for :attr:`lineage`."""
        return lake_dataset(self.storage.location(key), **facets)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """What this run read and wrote (see :mod:`airflow_mlops.lineage`), for the OpenLineage provider."""
        return operator_lineage(getattr(self, "lineage", None))

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
        """A failed run's lineage too: a blocked validation gate's datasets carry the failed assertions."""
        return operator_lineage(getattr(self, "lineage", None))

    def alert(self, context: Context, alert: Alert) -> None:
        """Tell the spec's alert channels; an alert that cannot be sent never fails the task."""
        send_alert(self.spec, alert, context)


class DailyOperator(PipelineOperator):
    """A step about one day: ``ds`` (templated; by default the run's date, see :func:`run_date`, so a run
    triggered without a logical date works too)."""

    template_fields = (*PipelineOperator.template_fields, "ds")

    def __init__(self, *, ds: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ds = ds

    def day(self, context: Context) -> date:
        return run_date(context, self.ds)
