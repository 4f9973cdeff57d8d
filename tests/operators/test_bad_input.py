"""Bad input through the features pipeline (``dag.test``): each landed day breaks one rule of the contract.
Each must fail ``validate_raw`` with a message naming the column and the rule, move the raw partition to
quarantine, and leave no offline partition, no online rows and no Asset event behind.

Shares the embedded stack of this test session; the pipeline is its own (``intake``), so nothing here
touches the churn pipeline's data.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from airflow_mlops import keys
from airflow_mlops.factory import build_pipelines
from airflow_mlops.sensors.partition import PartitionSensor
from airflow_mlops.spec import load_spec
from airflow_mlops.storage import LocalStorage
from tests.conftest import SMALL, STACK_HOME, churn_data, day, spec_variant

pytestmark = pytest.mark.filterwarnings("ignore")


def nulls(column: str, share: float):
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.astype({column: object}) if frame[column].dtype.kind == "O" else frame.copy()
        frame.loc[frame.index[: int(len(frame) * share)], column] = None
        return frame

    return change


def shift_time(delta: timedelta):
    return lambda frame: frame.assign(event_timestamp=frame["event_timestamp"] + delta)


def in_1970(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(event_timestamp=pd.Timestamp("1970-01-01", tz="UTC"))


def repeated_with_other_values(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([frame, frame.head(5).assign(monthly_charges=1.0)], ignore_index=True)


def int_with_nulls(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.astype({"tenure_months": "float64"})
    frame.loc[frame.index[:3], "tenure_months"] = np.nan
    return frame


# case: (change to a clean day, column the message must name, words of the rule)
CASES = {
    "100% nulls, float": (nulls("usage_minutes_7d", 1.0), "usage_minutes_7d", "null fraction"),
    "60% nulls, float": (nulls("payment_delay_days", 0.6), "payment_delay_days", "60.0% nulls"),
    "100% nulls, string": (nulls("region", 1.0), "region", "null fraction"),
    "60% nulls, string": (nulls("contract_type", 0.6), "contract_type", "60.0% nulls"),
    "string entity key": (lambda f: f.astype({"customer_id": str}), "customer_id", "spec says entity key"),
    "float entity key": (lambda f: f.astype({"customer_id": float}), "customer_id", "spec says entity key"),
    "timestamps in 1970": (in_1970, "event_timestamp", "outside"),
    "timestamps of the previous day": (shift_time(-timedelta(days=1)), "event_timestamp", "outside"),
    "timestamps in the future": (shift_time(timedelta(days=30)), "event_timestamp", "outside"),
    "same entity and time twice": (repeated_with_other_values, "customer_id", "5 repeated"),
    "int column with nulls": (int_with_nulls, "tenure_months", "integer column with 3 null(s)"),
}


@pytest.fixture(scope="module")
def metadata_db():
    from airflow.utils import db

    db.initdb()


@pytest.fixture(scope="module")
def intake(metadata_db, tmp_path_factory):
    path = spec_variant(
        tmp_path_factory.mktemp("intake"),
        "intake",
        name="intake",
        data={"raw_path": "raw/intake", "labels_path": "raw/intake_labels"},
        features={"feature_view": "intake_features"},
    )
    return serialized(build_pipelines(path)["intake_features"]), load_spec(path), LocalStorage(STACK_HOME / "data")


def serialized(dag):
    """Write the DAG to the metadata DB as the DAG processor would: ``dag.test`` only runs serialized DAGs,
    and this one is in no DAG bundle."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.session import create_session

    with create_session() as session:
        DagBundlesManager().sync_bundles_to_db(session=session)
    with create_session() as session:
        update_dag_parsing_results_in_db(
            "dags-folder", None, [LazyDeserializedDAG.from_dag(dag)], {}, None, set(), session=session
        )
    return dag


def online_rows(view: str) -> int:
    path = STACK_HOME / "feast" / "online.db"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as online:
        tables = [r[0] for r in online.execute(f"select name from sqlite_master where name like '%{view}'")]
        return sum(online.execute(f'select count(*) from "{t}"').fetchone()[0] for t in tables)


def asset_events(name: str) -> int:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = session.query(AssetEvent).join(AssetModel, AssetModel.id == AssetEvent.asset_id)
        return query.filter(AssetModel.name == name).count()


@pytest.mark.parametrize("case", list(CASES))
def test_bad_day_is_named_quarantined_and_goes_no_further(intake, case):
    dag, spec, storage = intake
    change, column, rule = CASES[case]
    index = list(CASES).index(case)
    ds = day(index)
    frame = change(churn_data.snapshot(SMALL, index))
    storage.write_parquet(f"{keys.raw_partition(spec, ds)}/part-0.parquet", frame)

    dagrun = dag.test(logical_date=datetime.combine(ds, datetime.min.time(), UTC))
    states = {ti.task_id: str(ti.state) for ti in dagrun.get_task_instances()}
    assert states == {"wait_for_partition": "success", "validate_raw": "failed", "publish_features": "upstream_failed"}
    result = storage.read_bytes(keys.validation_result(spec, "raw", keys.raw_partition(spec, ds)))
    failures = json.loads(result)["blocking_failures"]
    assert any(column in failure and rule in failure for failure in failures), failures
    assert storage.files(keys.quarantine_partition(spec, ds), ".parquet")
    assert not storage.exists(keys.raw_partition(spec, ds))
    assert not storage.exists(keys.offline_partition(spec, ds))
    assert online_rows(spec.features.feature_view) == 0
    assert asset_events(f"{spec.name}.{spec.features.feature_view}") == 0


def test_an_unreadable_file_is_quarantined_with_its_reason(intake):
    """A corrupt parquet file is bad data like any other: quarantined, the reason recorded, so monitoring
    skips the day instead of waiting for its features for hours."""
    dag, spec, storage = intake
    ds = day(len(CASES))
    storage.write_bytes(f"{keys.raw_partition(spec, ds)}/part-0.parquet", b"PAR1 not parquet at all")
    dagrun = dag.test(logical_date=datetime.combine(ds, datetime.min.time(), UTC))
    assert {ti.task_id: str(ti.state) for ti in dagrun.get_task_instances()}["validate_raw"] == "failed"
    result = json.loads(storage.read_bytes(keys.validation_result(spec, "raw", keys.raw_partition(spec, ds))))
    [failure] = result["blocking_failures"]
    assert failure.startswith("schema: readable parquet") and "part-0.parquet" in failure, failure
    assert storage.exists(keys.quarantine_partition(spec, ds)) and not storage.exists(keys.offline_partition(spec, ds))


def test_a_day_landing_part_by_part_waits_for_its_marker(metadata_db, tmp_path):
    path = spec_variant(
        tmp_path,
        "parts",
        name="parts",
        data={"raw_path": "raw/parts", "labels_path": "raw/parts_labels", "completion_marker": "_SUCCESS"},
        features={"feature_view": "parts_features"},
    )
    spec, storage, ds = load_spec(path), LocalStorage(STACK_HOME / "data"), day(1)
    frame = churn_data.snapshot(SMALL, 1)
    sensor = PartitionSensor(task_id="wait", dataset="raw", spec_path=str(path), ds=str(ds))
    storage.write_parquet(f"{keys.raw_partition(spec, ds)}/part-0.parquet", frame.iloc[:200])
    assert not sensor.poke({})  # a first part is not the day
    storage.write_parquet(f"{keys.raw_partition(spec, ds)}/part-1.parquet", frame.iloc[200:])
    storage.write_bytes(keys.completion_marker(spec, ds), b"")
    assert sensor.poke({})

    dag = serialized(build_pipelines(path)["parts_features"])
    dagrun = dag.test(logical_date=datetime.combine(ds, datetime.min.time(), UTC))
    assert str(dagrun.state) == "success"
    offline = pd.read_parquet(storage.path(f"{keys.offline_partition(spec, ds)}/part.parquet"))
    assert len(offline) == len(frame)
    # what the bad days must not leave behind, seen here for a good one
    assert online_rows(spec.features.feature_view) == len(frame) * len(spec.data.features)
    assert asset_events(f"{spec.name}.{spec.features.feature_view}") == 1
