"""Synthesised samples: valid for the spec's own suites, learnable, and the same every time."""

from datetime import date

import pandas as pd
import pytest

from airflow_mlops.ci.sample import min_rows, sample_days, stage, suite_bounds, synthesise
from airflow_mlops.keys import partition
from airflow_mlops.steps.validation import validate_frame
from airflow_mlops.storage import DataError

FIRST = date(2026, 3, 1)


def test_suite_bounds_read_ranges_sets_means_and_row_counts(spec):
    bounds = suite_bounds(spec.features.raw_suite, spec.training.training_suite)
    assert (min_rows(spec.features.raw_suite), min_rows(spec.training.training_suite)) == (1, 500)
    assert (bounds["satisfaction_score"].low, bounds["satisfaction_score"].high) == (1, 5)
    assert bounds["contract_type"].values == ["month-to-month", "one-year", "two-year"]
    assert bounds["monthly_charges"].mean == (40, 120) and bounds["churned"].values == [0, 1]


def test_synthesised_days_pass_every_expectation_of_the_raw_suite_and_carry_a_learnable_label(spec, tmp_path):
    days = synthesise(spec, tmp_path, FIRST)
    assert len(days) == sample_days(spec) == 8 and days[0] == FIRST
    raw = pd.read_parquet(tmp_path / partition(spec.data.raw_path, days[3]))
    report = validate_frame(raw, spec.features.raw_suite, spec.data, source="sample")
    assert report.passed and report.warnings == [], report.summary()  # warnings too: a clean sample
    labels = pd.concat(pd.read_parquet(tmp_path / partition(spec.data.labels_path, d)) for d in days)
    assert len(labels) >= 500 and 0.02 < labels["churned"].mean() < 0.6  # the training suite's bounds
    joined = raw.merge(labels, on=[spec.data.entity_key, spec.data.timestamp_column])
    assert len(joined) == len(raw)  # a label for every row, arriving the same day
    again = tmp_path / "again"
    synthesise(spec, again, FIRST)
    assert pd.read_parquet(again / partition(spec.data.raw_path, days[3])).equals(raw)


def test_a_synthesised_regression_label_passes_the_training_suite_and_follows_the_features(rides_spec, tmp_path):
    data = rides_spec.data
    days = synthesise(rides_spec, tmp_path, FIRST)
    raw = pd.concat(pd.read_parquet(tmp_path / partition(data.raw_path, d)) for d in days)
    labels = pd.concat(pd.read_parquet(tmp_path / partition(data.labels_path, d)) for d in days)
    joined = raw.merge(labels, on=[data.entity_key, data.timestamp_column])
    suite = rides_spec.training.training_suite
    report = validate_frame(joined, suite, data, source="sample", labelled=True)
    assert report.passed and report.warnings == [], report.summary()
    assert joined[data.label_column].nunique() > 100  # counts, not classes
    numbers = joined[["rides_7d_avg", "capacity", "temperature_c", data.label_column]].astype(float)
    assert numbers.corr()[data.label_column].drop(data.label_column).abs().max() > 0.2  # learnable


def test_a_kept_sample_is_used_as_is(spec, tmp_path):
    project, lake = tmp_path / "project", tmp_path / "lake"
    kept = project / "include" / "samples" / "churn"
    synthesise(spec, kept, FIRST)
    days, origin = stage(spec, project, lake, date(2020, 1, 1))
    assert days[0] == FIRST and str(kept) in origin
    assert (lake / partition(spec.data.raw_path, FIRST) / "part-0.parquet").is_file()
    days, origin = stage(spec, tmp_path / "no-samples", tmp_path / "lake2", date(2020, 1, 1))
    assert days[0] == date(2020, 1, 1) and "synthesised" in origin
    misplaced = tmp_path / "misplaced"
    (misplaced / "include" / "samples" / "churn" / "customers").mkdir(parents=True)
    with pytest.raises(DataError, match=r"holds no raw partitions at raw/customers/date=YYYY-MM-DD/"):
        stage(spec, misplaced, tmp_path / "lake3", FIRST)
