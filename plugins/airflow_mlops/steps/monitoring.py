"""Monitoring: batch scoring with the champion, performance once labels arrive, and the policy that
decides whether drift or decay should start a training run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import pandas as pd

from airflow_mlops.spec import LOWER_IS_BETTER, DriftPolicySpec, PipelineSpec
from airflow_mlops.storage import Storage, partition, read_parquet, read_partition


def predictions_key(spec: PipelineSpec, ds: date) -> str:
    return f"{partition(spec.monitoring.predictions_path, ds)}/predictions.parquet"


def score(model: Any, features: pd.DataFrame, spec: PipelineSpec, model_version: str) -> pd.DataFrame:
    """Champion scores for one day of features: entity, timestamp, score, and which model made it."""
    probabilities = model.predict(features[spec.data.feature_names])
    scores = pd.DataFrame(probabilities).to_numpy(dtype=float)[:, -1]
    return pd.DataFrame(
        {
            spec.data.entity_key: features[spec.data.entity_key].to_numpy(),
            spec.data.timestamp_column: pd.to_datetime(features[spec.data.timestamp_column], utc=True),
            "score": scores,
            "model_version": str(model_version),
        }
    )


def labelled_predictions(storage: Storage, spec: PipelineSpec, ds: date) -> pd.DataFrame:
    """Predictions joined with the labels that arrived in the last ``performance_window_days`` up to ``ds``.

    Labels land after their snapshot, so predictions are read over twice the window to meet them.
    """
    window = spec.monitoring.performance_window_days
    days = [ds - timedelta(days=offset) for offset in range(2 * window)]
    predictions = [
        read_parquet(storage, predictions_key(spec, d)) for d in days if storage.exists(predictions_key(spec, d))
    ]
    labels = [
        read_partition(storage, partition(spec.data.labels_path, d))
        for d in days[:window]
        if storage.files(partition(spec.data.labels_path, d), ".parquet")
    ]
    keys = [spec.data.entity_key, spec.data.timestamp_column]
    if not predictions or not labels:
        return pd.DataFrame(columns=[*keys, "score", "model_version", spec.data.label_column])
    scored = pd.concat(predictions, ignore_index=True)
    truth = pd.concat(labels, ignore_index=True)
    truth[spec.data.timestamp_column] = pd.to_datetime(truth[spec.data.timestamp_column], utc=True)
    return scored.merge(truth[[*keys, spec.data.label_column]], on=keys, how="inner")


def performance(frame: pd.DataFrame, label_column: str) -> dict[str, float] | None:
    """Metrics on labelled predictions; ``None`` until both classes have been seen."""
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

    if frame.empty or frame[label_column].nunique() < 2:
        return None
    y, p = frame[label_column].astype(int), frame["score"].astype(float)
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "accuracy": float(accuracy_score(y, p >= 0.5)),
        "f1": float(f1_score(y, p >= 0.5, zero_division=0)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "labelled_rows": float(len(frame)),
    }


@dataclass
class RetrainDecision:
    retrain: bool
    reason: str
    drifted_columns: list[str] = field(default_factory=list)
    why_not: str | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "retrain": self.retrain,
            "reason": self.reason,
            "drifted_columns": self.drifted_columns,
            "why_not": self.why_not,
        }


def decide_retraining(
    policy: DriftPolicySpec,
    drift_share: float,
    drifted_columns: list[str],
    metrics: dict[str, float] | None,
    *,
    today: date,
    last_training: date | None,
    training_active: bool,
) -> RetrainDecision:
    """Drift (share or key feature) or decay (a metric under its floor) asks for training,
    unless a training run is active or one ran within the cooldown."""
    reasons = []
    if drift_share >= policy.max_drifted_share:
        reasons.append(f"drift: {drift_share:.0%} of features drifted (limit {policy.max_drifted_share:.0%})")
    key_drifted = [c for c in policy.key_features if c in drifted_columns]
    if key_drifted:
        reasons.append(f"drift: key features drifted {key_drifted}")
    for metric, floor in policy.min_performance.items():
        if metrics is None or metric not in metrics:
            continue
        worse = metrics[metric] > floor if metric in LOWER_IS_BETTER else metrics[metric] < floor
        if worse:
            reasons.append(f"performance: {metric} {metrics[metric]:.3f} past its limit {floor}")
    decision = RetrainDecision(bool(reasons), "; ".join(reasons) or "no drift", drifted_columns)
    if not decision.retrain:
        return decision
    if training_active:
        decision.retrain, decision.why_not = False, "a training run is already queued or running"
    elif last_training is not None and (today - last_training).days < policy.cooldown_days:
        decision.retrain = False
        decision.why_not = (
            f"cooldown: last training on {last_training}, {(today - last_training).days} day(s) ago "
            f"(cooldown {policy.cooldown_days} days)"
        )
    return decision
