"""Feast: offline partitions from validated data, materialisation, point-in-time training sets."""

from datetime import timedelta

import pandas as pd
import pytest

from airflow_mlops import keys
from airflow_mlops.keys import partition
from airflow_mlops.steps import features
from airflow_mlops.storage import LocalStorage, read_partition
from tests.conftest import SMALL, day


@pytest.fixture
def feast_store(tmp_path, spec):
    target = features.FeastTarget(
        {
            "project": "test",
            "registry": {"registry_type": "sql", "path": f"sqlite:///{tmp_path / 'registry.db'}"},
            "online_store": {"type": "sqlite", "path": str(tmp_path / "online.db")},
            "offline_store": {"type": "duckdb"},
        }
    )
    return target.store()


def publish(storage, scenario_root, spec, days):
    raw = LocalStorage(scenario_root)
    for index in days:
        frame = read_partition(raw, partition(spec.data.raw_path, day(index)))
        features.write_offline(storage, spec, day(index), frame)


def published_with_labels(storage, scenario_root, spec, feast_store):
    """Eight days of features published and applied, and the labels that arrived on those days."""
    publish(storage, scenario_root, spec, range(0, 8))
    features.apply(feast_store, spec, storage)
    labels = LocalStorage(scenario_root)
    for index in range(0, 8):
        key = partition(spec.data.labels_path, day(index))
        storage.write_parquet(f"{key}/labels.parquet", read_partition(labels, key))


def test_materialised_online_values_are_the_latest_offline_rows(tmp_path, storage, scenario_root, spec, feast_store):
    publish(storage, scenario_root, spec, [0, 1, 2])
    features.apply(feast_store, spec, storage)
    start, _ = features.materialize(feast_store, storage, spec, day(2))
    assert start.date() == day(2) - timedelta(days=spec.features.overlap_days)
    online = features.online_features(feast_store, spec, [1, 2, 3]).set_index("customer_id").sort_index()
    latest = read_partition(storage, partition(keys.offline_prefix(spec), day(2))).set_index("customer_id")
    expected = latest.loc[[1, 2, 3], spec.data.feature_names]
    pd.testing.assert_frame_equal(online[spec.data.feature_names], expected, check_dtype=False)

    features.materialize(feast_store, storage, spec, day(0))  # re-running an old day keeps the newest values
    again = features.online_features(feast_store, spec, [1, 2, 3]).set_index("customer_id").sort_index()
    pd.testing.assert_frame_equal(again[spec.data.feature_names], expected, check_dtype=False)


def test_rewriting_a_day_replaces_it(storage, scenario_root, spec):
    publish(storage, scenario_root, spec, [1])
    publish(storage, scenario_root, spec, [1])
    files = storage.files(partition(keys.offline_prefix(spec), day(1)), ".parquet")
    assert len(files) == 1
    assert len(pd.read_parquet(storage.path(files[0]))) == SMALL.customers


def test_point_in_time_join_never_looks_ahead(storage, scenario_root, spec, feast_store):
    published_with_labels(storage, scenario_root, spec, feast_store)
    entities = features.training_entities(storage, spec, day(7))
    # labels arrive 3 days late: by day 7 we know snapshots of days 0..4
    assert sorted(entities["event_timestamp"].dt.date.unique()) == [day(i) for i in range(5)]
    training = features.point_in_time_training_set(feast_store, spec, entities)
    assert len(training) == len(entities) == 5 * SMALL.customers
    for index in (0, 4):
        snapshot = read_partition(storage, partition(keys.offline_prefix(spec), day(index)))
        joined = training[training["event_timestamp"].dt.date == day(index)].set_index("customer_id").sort_index()
        truth = snapshot.set_index("customer_id").sort_index()
        pd.testing.assert_series_equal(joined["monthly_charges"], truth["monthly_charges"], check_dtype=False)


def test_entity_without_any_features_gets_no_row(storage, scenario_root, spec, feast_store):
    publish(storage, scenario_root, spec, [0, 1])
    features.apply(feast_store, spec, storage)
    entities = pd.DataFrame(
        {"customer_id": [1, 999_999], "event_timestamp": pd.Timestamp(day(1), tz="UTC"), "churned": [0, 1]}
    )
    training = features.point_in_time_training_set(feast_store, spec, entities)
    assert training["customer_id"].tolist() == [1]


def test_no_labels_in_window_is_a_clear_error(storage, spec):
    with pytest.raises(ValueError, match=r"no label partitions under .*raw/labels"):
        features.training_entities(storage, spec, day(5))


def test_a_training_set_rebuilt_on_other_data_never_replaces_the_first(storage, scenario_root, spec, feast_store):
    """An older model version's ``training_set`` tag keeps pointing at the data it was trained on."""
    published_with_labels(storage, scenario_root, spec, feast_store)
    first = features.build_training_set(feast_store, storage, spec, day(7))
    late = partition(spec.data.labels_path, day(7))  # a late correction of one day's labels
    corrected = read_partition(storage, late).assign(churned=lambda f: 1 - f["churned"])
    storage.write_parquet(f"{late}/labels.parquet", corrected)
    second = features.build_training_set(feast_store, storage, spec, day(7))
    assert first["fingerprint"] != second["fingerprint"] and first["key"] != second["key"]
    assert storage.exists(first["key"]) and storage.exists(second["key"])
    assert features.build_training_set(feast_store, storage, spec, day(7))["key"] == second["key"]


def test_the_offline_store_and_feast_keep_the_declared_types(storage, spec, scenario_root):
    """A string entity key, a pandas categorical (stored as its strings), a bool, an int32 with a null."""
    from airflow_mlops.spec import Column

    kinds = {"contract_type": "category", "num_products": "int32", "satisfaction_score": "float32"}
    features_ = [Column(name=c.name, dtype=kinds.get(c.name, c.dtype)) for c in spec.data.features]
    data = spec.data.model_copy(
        update={"features": [*features_, Column(name="autopay", dtype="bool")], "entity_key_dtype": "string"}
    )
    typed = spec.model_copy(update={"data": data})
    landed = pd.read_parquet(scenario_root / partition(spec.data.raw_path, day(1)))
    landed = landed.astype({"customer_id": str, "contract_type": "category", "satisfaction_score": "float32"})
    landed["num_products"] = landed["num_products"].astype("Int32").mask(landed.index == 0)
    landed["autopay"] = landed.index % 2 == 0
    stored = read_partition(storage, features.write_offline(storage, typed, day(1), landed))
    assert stored["customer_id"].tolist() == landed["customer_id"].tolist()
    assert stored["contract_type"].tolist() == landed["contract_type"].astype(str).tolist()
    assert not isinstance(stored["contract_type"].dtype, pd.CategoricalDtype)
    assert str(stored["num_products"].dtype) == "Int32" and stored["num_products"].isna().sum() == 1
    assert stored["autopay"].tolist() == landed["autopay"].tolist()
    entity, view = features.definitions(typed, storage)
    assert entity.value_type.name == "STRING"
    assert {f.name: str(f.dtype) for f in view.schema if f.name in kinds or f.name == "autopay"} == {
        "contract_type": "String",
        "num_products": "Int32",
        "satisfaction_score": "Float32",
        "autopay": "Bool",
    }


def test_a_training_sets_label_mean_is_the_positive_share_or_the_mean_and_none_for_classes_or_text(
    spec, labelled, rides_spec, rides_labelled, demand_spec, demand_labelled
):
    assert features.label_mean(spec, labelled) == pytest.approx(labelled["churned"].mean(), abs=1e-4)
    assert features.label_mean(rides_spec, rides_labelled) == pytest.approx(
        rides_labelled["rides_next_day"].mean(), abs=1e-4
    )
    assert features.label_mean(demand_spec, demand_labelled) is None
    text = rides_labelled.assign(rides_next_day=rides_labelled["rides_next_day"].astype(str))
    assert features.label_mean(rides_spec, text) is None  # the training-set gate names it next
