"""The Great Expectations gate, for a day's raw partition and for a training set."""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING, Any, Literal

from airflow.sdk.exceptions import AirflowFailException

from airflow_mlops import keys
from airflow_mlops.links import ValidationResultLink
from airflow_mlops.operators.base import DailyOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlops.contracts import ValidationRecord


class ValidateDataOperator(DailyOperator):
    """GX gate. ``stage="raw"``: the day's landed partition, quarantined when blocked.
    ``stage="training"``: the training set built upstream (``training_set``, its record)."""

    template_fields = (*DailyOperator.template_fields, "training_set")
    operator_extra_links = (ValidationResultLink(),)

    def __init__(self, *, stage: Literal["raw", "training"], training_set: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stage = stage
        self.training_set = training_set

    def run(self, context: Context) -> ValidationRecord:
        from airflow_mlops.steps import validation

        spec, storage = self.spec, self.storage
        day = self.day(context) if self.stage == "raw" else None
        if day is not None:
            folder = keys.raw_partition(spec, day)
        elif self.training_set:
            folder = posixpath.dirname(self.training_set["key"])
        else:
            raise AirflowFailException("training-set validation needs the training set's record (training_set=)")
        report, record = validation.validate_stored(storage, spec, self.stage, folder, day)
        self.lineage.inputs.append(self.in_lake(folder, checked=report))
        self.log.info("validation of %s: %s", folder, record)
        context["ti"].xcom_push(key="validation", value=record)
        if report.passed:
            return record
        if day is not None:
            self.log.error("quarantined %s to %s", folder, validation.quarantine(storage, spec, day))
            self.lineage.outputs.append(self.in_lake(keys.quarantine_partition(spec, day)))
        raise validation.ValidationFailed(report)
