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
