"""Drift verdicts (Evidently's own), the retraining policy, scoring and performance."""

from datetime import date

import numpy as np
import pandas as pd
import pytest

from airflow_mlops.spec import DriftPolicySpec
from airflow_mlops.steps import drift, monitoring
from tests.conftest import SMALL, churn_data


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return pd.concat([churn_data.snapshot(SMALL, i) for i in range(4, 8)], ignore_index=True)


def test_same_world_does_not_drift(reference, spec):
    result, snapshot = drift.detect_drift(reference, churn_data.snapshot(SMALL, 9), spec.data, 0.3)
    assert result.drifted_columns == [] and not result.dataset_drift
    assert {c.column for c in result.columns} == set(spec.data.feature_names)
    assert "<html" in snapshot.get_html_str(as_iframe=False)[:1000].lower()


def test_covariate_shift_drifts_and_matches_evidentlys_share(reference, spec):
    result, snapshot = drift.detect_drift(reference, churn_data.snapshot(SMALL, 13), spec.data, 0.3)
    assert {"monthly_charges", "support_calls_30d", "usage_minutes_7d"} <= set(result.drifted_columns)
    assert result.dataset_drift
    evidently_share = next(
        m["value"]["share"] for m in snapshot.dict()["metrics"] if m["config"]["type"].endswith("DriftedColumnsCount")
    )
    assert result.share == pytest.approx(evidently_share)
    # small reference: Evidently picks K-S / chi-square style tests; large: distances; we report what it used
    assert all(c.method and c.threshold > 0 for c in result.columns)


POLICY = DriftPolicySpec(
    max_drifted_share=0.3, key_features=["monthly_charges"], min_performance={"roc_auc": 0.7}, cooldown_days=5
)


def decide(share=0.0, drifted=(), metrics=None, last=None, active=False):
    return monitoring.decide_retraining(
        POLICY, share, list(drifted), metrics, today=date(2026, 2, 10), last_training=last, training_active=active
    )


def test_policy_branches():
    assert not decide().retrain
    assert decide(share=0.4, drifted=["a", "b", "c", "d"]).retrain
    key = decide(share=0.1, drifted=["monthly_charges"])
    assert key.retrain and "key features" in key.reason
    decay = decide(metrics={"roc_auc": 0.61})
    assert decay.retrain and "performance" in decay.reason
    assert not decide(metrics={"roc_auc": 0.75}).retrain


def test_policy_holds_back_during_cooldown_and_active_runs():
    cooled = decide(share=0.5, drifted=["a"], last=date(2026, 2, 8))
    assert not cooled.retrain and "cooldown" in cooled.why_not and "2 day(s)" in cooled.why_not
    assert decide(share=0.5, drifted=["a"], last=date(2026, 2, 4)).retrain
    busy = decide(share=0.5, drifted=["a"], active=True)
    assert not busy.retrain and "already" in busy.why_not


class Constant:
    def predict(self, frame):
        return np.column_stack([np.full(len(frame), 0.3), np.full(len(frame), 0.7)])


def test_scores_and_performance(spec):
    frame = churn_data.snapshot(SMALL, 2)
    scored = monitoring.score(Constant(), frame, spec, "4")
    assert list(scored.columns) == ["customer_id", "event_timestamp", "score", "model_version"]
    assert scored["score"].eq(0.7).all() and scored["model_version"].eq("4").all()
    labels = churn_data.labels_arriving(SMALL, 2 + SMALL.label_delay_days)
    joined = scored.merge(labels, on=["customer_id", "event_timestamp"])
    metrics = monitoring.performance(joined, "churned")
    assert metrics["roc_auc"] == pytest.approx(0.5) and metrics["labelled_rows"] == len(frame)
    assert monitoring.performance(joined.iloc[0:0], "churned") is None
