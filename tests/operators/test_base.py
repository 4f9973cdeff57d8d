"""What every operator shares: the connections it reaches through hooks, and the names it is imported by."""

from __future__ import annotations

import pytest

from tests.conftest import SPEC_PATH


def test_operators_import_from_the_package_as_before_the_split() -> None:
    from airflow_mlops import operators
    from airflow_mlops.operators.training import TrainModelOperator

    assert operators.TrainModelOperator is TrainModelOperator
    with pytest.raises(AttributeError, match="NoSuchOperator"):
        operators.NoSuchOperator  # noqa: B018


def test_storage_conn_id_still_names_the_lake_connection() -> None:
    from airflow_mlops.operators.features import PublishFeaturesOperator

    with pytest.warns(DeprecationWarning, match="storage_conn_id is now lake_conn_id"):
        task = PublishFeaturesOperator(task_id="publish", spec_path=str(SPEC_PATH), storage_conn_id="my_lake")
    assert task.lake_conn_id == "my_lake"


def test_a_daily_task_of_a_run_without_a_logical_date_is_about_the_last_complete_day() -> None:
    """``airflow dags trigger`` without a date, or a REST trigger with ``logical_date: null``: no ``ds`` to
    render (it failed with "'ds' is undefined"); the day is the last one complete when the run was asked."""
    from datetime import UTC, date, datetime
    from types import SimpleNamespace

    from airflow_mlops.operators.validation import ValidateDataOperator

    task = ValidateDataOperator(task_id="validate", stage="training", spec_path=str(SPEC_PATH))
    asked = {"logical_date": None, "dag_run": SimpleNamespace(run_after=datetime(2026, 3, 4, 9, tzinfo=UTC))}
    assert task.ds is None and task.day(asked) == date(2026, 3, 3)  # type: ignore[arg-type]
    explicit = ValidateDataOperator(task_id="validate", stage="raw", spec_path=str(SPEC_PATH), ds="2026-01-02")
    assert explicit.day(asked) == date(2026, 1, 2)  # type: ignore[arg-type]


def test_training_defaults_to_the_last_day_of_its_data_interval() -> None:
    """A weekly run covering [S-7, S) trains on the labels known by S-1; a backfill of that week too."""
    from datetime import UTC, date, datetime
    from types import SimpleNamespace

    from airflow_mlops.operators.base import last_complete_day

    week = {
        "logical_date": datetime(2026, 3, 1, tzinfo=UTC),
        "data_interval_start": datetime(2026, 3, 1, tzinfo=UTC),
        "data_interval_end": datetime(2026, 3, 8, tzinfo=UTC),
    }
    assert last_complete_day(week) == date(2026, 3, 7)  # type: ignore[arg-type]
    assert last_complete_day(week, "2026-02-20") == date(2026, 2, 20)  # type: ignore[arg-type]
    undated = {"data_interval_start": None, "data_interval_end": None, "logical_date": None}
    undated["dag_run"] = SimpleNamespace(run_after=datetime(2026, 3, 4, 9, tzinfo=UTC))
    assert last_complete_day(undated) == date(2026, 3, 3)  # type: ignore[arg-type]


def test_a_scheduled_run_covers_the_complete_day_before_it_fires() -> None:
    """Airflow 3's default for a cron string would fire at D 00:00 with ``ds = D``, a day not over yet."""
    from datetime import UTC, datetime

    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.timetables.base import TimeRestriction

    from airflow_mlops.factory import build_pipelines

    start = datetime(2026, 1, 1, tzinfo=UTC)
    for dag_id, dag in build_pipelines(SPEC_PATH).items():
        if dag_id.endswith("_rollback"):  # triggered by hand only
            continue
        timetable = coerce_to_core_timetable(dag.timetable)
        first = timetable.next_dagrun_info(
            last_automated_data_interval=None, restriction=TimeRestriction(earliest=start, latest=None, catchup=True)
        )
        assert first is not None and first.logical_date == first.data_interval.start, dag_id
        assert first.run_after == first.data_interval.end > first.logical_date, dag_id
