"""The GX gate and the bad inputs it must name: every case says which column and what is wrong."""

import json

import numpy as np
import pandas as pd
import pytest

from airflow_mlops.keys import partition
from airflow_mlops.steps.validation import ValidationFailed, load_suite, validate_frame
from airflow_mlops.storage import DataError, LocalStorage, read_partition
from tests.conftest import day


@pytest.fixture(scope="module")
def good(scenario_root) -> pd.DataFrame:
    return pd.read_parquet(scenario_root / "raw/customers" / f"date={day(1)}" / "customers.parquet")


def check(frame, spec):
    return validate_frame(frame, spec.features.raw_suite, spec.data, source="day.parquet")


def test_clean_partition_passes(good, spec):
    report = check(good, spec)
    assert report.passed, report.summary()
    assert report.summary()["evaluated"] > 20 and report.rows == len(good)


def test_missing_column_is_named(good, spec):
    report = check(good.drop(columns=["monthly_charges"]), spec)
    assert not report.passed
    assert any("monthly_charges" in f and "missing" in f for f in report.summary()["blocking_failures"])


def test_renamed_column_is_named(good, spec):
    report = check(good.rename(columns={"region": "area"}), spec)
    assert [o.column for o in report.blocking] == ["region"]
    assert "area" in report.blocking[0].detail  # shows what was found instead


def test_wrong_dtype_is_named(good, spec):
    frame = good.assign(tenure_months=good["tenure_months"].astype(str))
    report = check(frame, spec)
    assert [o.column for o in report.blocking] == ["tenure_months"]
    assert "spec says int64" in report.blocking[0].detail


def test_the_dtypes_people_land_are_accepted_where_they_fit_and_named_where_not(good, spec):
    from airflow_mlops.spec import Column
    from airflow_mlops.steps.validation import check_schema

    kinds = {"contract_type": "category", "num_products": "int32", "satisfaction_score": "float32"}
    features = [Column(name=c.name, dtype=kinds.get(c.name, c.dtype)) for c in spec.data.features]
    data = spec.data.model_copy(update={"features": [*features, Column(name="autopay", dtype="bool")]})
    landed = good.astype({"contract_type": "category", "num_products": "int32", "satisfaction_score": "float32"})
    landed["autopay"] = landed["customer_id"] % 2 == 0
    assert all(o.success for o in check_schema(landed, data, "day.parquet"))
    assert all(o.success for o in check_schema(landed.astype({"num_products": "int64"}), data, "day.parquet"))

    def failures(frame, data=data):
        return {o.column: o.detail for o in check_schema(frame, data, "day.parquet") if not o.success}

    assert failures(landed.assign(num_products=2**40)) == {
        "num_products": f"values from {2**40} to {2**40} do not fit int32"
    }
    assert failures(landed.assign(autopay="yes")) == {
        "autopay": "values other than true, false and null; spec says bool"
    }
    with_nulls = landed.assign(
        num_products=landed["num_products"].astype("Int32").mask(landed.index < 3),
        autopay=landed["autopay"].astype(object).mask(landed.index < 3, None),
    )
    assert failures(with_nulls) == {"num_products": "an integer column with 3 null(s); spec says int32"}
    keyed = data.model_copy(update={"entity_key_dtype": "string"})
    assert failures(landed, keyed) == {"customer_id": "dtype int64, spec says entity key (string)"}
    assert failures(landed.astype({"customer_id": str}), keyed) == {}


def test_null_surge_blocks(good, spec):
    frame = good.copy()
    frame.loc[frame.index[: len(frame) // 3], "monthly_charges"] = np.nan
    failures = check(frame, spec).summary()["blocking_failures"]
    assert any("not_be_null" in f and "monthly_charges" in f for f in failures)


def test_out_of_range_blocks(good, spec):
    frame = good.assign(satisfaction_score=good["satisfaction_score"] * 3)
    failures = check(frame, spec).summary()["blocking_failures"]
    assert any("be_between" in f and "satisfaction_score" in f for f in failures)


def test_empty_partition_blocks(good, spec):
    report = check(good.iloc[0:0], spec)
    assert not report.passed
    assert any("no rows" in f for f in report.summary()["blocking_failures"])


def test_warn_severity_reports_without_blocking(good, spec):
    frame = good.copy()
    frame.loc[frame.index[:20], "region"] = "atlantis"  # 5% outside the set: the suite only warns
    report = check(frame, spec)
    assert report.passed
    assert any("region" in w for w in report.summary()["warnings"])


def test_validation_failed_message_names_source_and_failures(good, spec):
    report = check(good.drop(columns=["region"]), spec)
    message = str(ValidationFailed(report))
    assert "day.parquet" in message and "region" in message and "churn_raw" in message


def test_corrupt_and_missing_files_are_named(tmp_path):
    storage = LocalStorage(tmp_path)
    key = partition("raw/customers", "2026-01-01")
    with pytest.raises(DataError, match="no parquet files"):
        read_partition(storage, key)
    storage.write_bytes(f"{key}/customers.parquet", b"PAR1 this is not parquet")
    with pytest.raises(DataError, match=r"cannot read .*customers\.parquet"):
        read_partition(storage, key)


def test_suite_with_bad_severity_is_rejected(tmp_path):
    suite = {
        "name": "s",
        "expectations": [{"type": "expect_column_to_exist", "kwargs": {"column": "a"}, "meta": {"severity": "panic"}}],
    }
    path = tmp_path / "suite.json"
    path.write_text(json.dumps(suite))
    with pytest.raises(DataError, match=r"expectations\[0\]\.meta\.severity is 'panic'"):
        load_suite(path)


def test_invalid_expectation_is_an_error_not_dropped(tmp_path, good, spec):
    suite = {"name": "s", "expectations": [{"type": "expect_column_values_to_be_between", "kwargs": {}}]}
    path = tmp_path / "suite.json"
    path.write_text(json.dumps(suite))
    with pytest.raises(DataError, match=r"expectations\[0\]"):
        validate_frame(good, path, spec.data, source="x")


def test_training_set_gate_blocks_a_set_with_one_class(good, spec):
    good = pd.concat([good, good], ignore_index=True)  # the suite wants at least 500 rows
    training_set = good.assign(churned=0)
    report = validate_frame(training_set, spec.training.training_suite, spec.data, source="set.parquet")
    assert not report.passed
    assert any("churned" in f and "mean" in f for f in report.summary()["blocking_failures"])
    assert validate_frame(
        good.assign(churned=(good["customer_id"] % 5 == 0).astype(int)),
        spec.training.training_suite,
        spec.data,
        source="set.parquet",
    ).passed


def test_a_label_that_does_not_fit_the_task_is_named_at_the_training_set_gate(good, spec, rides_spec, rides_labelled):
    """The issue's case: counts as the label of a binary spec fail the gate, not sklearn in train_model."""
    good = pd.concat([good, good], ignore_index=True)
    counts = good.assign(churned=(good["customer_id"] % 7).astype(float) * 1.5)
    report = validate_frame(counts, spec.training.training_suite, spec.data, source="set.parquet", labelled=True)
    assert not report.passed
    [label] = [f for f in report.summary()["blocking_failures"] if f.startswith("contract: label")]
    assert label == (
        "contract: label fits data.task binary on column 'churned' (a binary label is 0 or 1; found 7 distinct "
        "values (0.0, 1.5, 3.0, 4.5, 6.0, ...): map them to 0 and 1, or declare data.task multiclass (with "
        "data.classes) or regression)"
    )
    as_text = rides_labelled.assign(rides_next_day=rides_labelled["rides_next_day"].astype(str))
    suite = rides_spec.training.training_suite
    report = validate_frame(as_text, suite, rides_spec.data, source="set.parquet", labelled=True)
    assert "a regression label is a number; found dtype object (e.g. " in " ".join(
        report.summary()["blocking_failures"]
    )
    assert validate_frame(rides_labelled, suite, rides_spec.data, source="set.parquet", labelled=True).passed


def test_quarantining_a_day_again_keeps_the_earlier_evidence(storage, spec, good):
    """A day landed, blocked, landed again and blocked again: both blocked versions stay in quarantine."""
    from airflow_mlops import keys
    from airflow_mlops.steps.validation import quarantine

    moved = []
    for attempt in range(2):
        storage.write_parquet(f"{keys.raw_partition(spec, day(1))}/part.parquet", good.head(10 + attempt))
        moved.append(quarantine(storage, spec, day(1)))
    assert moved[0] != moved[1]
    assert [len(read_partition(storage, folder)) for folder in moved] == [10, 11]
