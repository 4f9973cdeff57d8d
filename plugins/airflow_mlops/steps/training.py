"""Train and evaluate: a time-based holdout, an sklearn pipeline per trainer, metrics on the holdout.

Every trainer is an sklearn ``Pipeline`` (preprocessing + estimator), so MLflow logs, loads and serves
all of them the same way, the torch one included.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from airflow_mlops.spec import DataSpec, ModelSpec, SpecError
from airflow_mlops.storage import DataError


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    holdout: pd.DataFrame
    holdout_start: pd.Timestamp


def time_split(frame: pd.DataFrame, timestamp_column: str, holdout_days: int) -> Split:
    """The last ``holdout_days`` days are the holdout: the model is judged on the future it did not see."""
    if frame.empty:
        raise DataError("training set is empty: no labelled rows in the training window")
    timestamps = pd.to_datetime(frame[timestamp_column], utc=True)
    start = timestamps.max().normalize() - timedelta(days=holdout_days - 1)
    in_holdout = timestamps >= start
    train, holdout = frame[~in_holdout], frame[in_holdout]
    if train.empty or holdout.empty:
        raise DataError(
            f"cannot split training set on '{timestamp_column}' with holdout_days={holdout_days}: "
            f"{len(train)} training rows, {len(holdout)} holdout rows "
            f"(data spans {timestamps.min().date()} to {timestamps.max().date()})"
        )
    return Split(train.reset_index(drop=True), holdout.reset_index(drop=True), start)


def build_model(model: ModelSpec, data: DataSpec) -> Any:
    """An unfitted sklearn pipeline for the spec's trainer."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    numerical, categorical = data.numerical, data.categorical
    if model.trainer == "sklearn_gradient_boosting":
        encode = ColumnTransformer(
            [
                ("num", "passthrough", numerical),
                ("cat", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan), categorical),
            ]
        )
        params = {
            "random_state": 0,
            "categorical_features": list(range(len(numerical), len(numerical) + len(categorical))),
        }
        return Pipeline([("encode", encode), ("model", HistGradientBoostingClassifier(**{**params, **model.params}))])

    dense = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numerical),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical),
        ]
    )
    if model.trainer == "sklearn_logistic_regression":
        return Pipeline([("encode", dense), ("model", LogisticRegression(**{"max_iter": 1000, **model.params}))])

    from airflow_mlops.steps.torch_mlp import TorchMLPClassifier

    return Pipeline([("encode", dense), ("model", TorchMLPClassifier(**model.params))])


def fit(model: ModelSpec, data: DataSpec, train: pd.DataFrame) -> Any:
    try:  # unknown or ill-typed trainer params surface as TypeErrors from the estimator
        pipeline = build_model(model, data)
        pipeline.fit(train[data.feature_names], train[data.label_column].astype(int))
    except TypeError as exc:
        raise SpecError(f"training.model.params {model.params} rejected by {model.trainer}: {exc}") from exc
    return pipeline


def evaluate(model: Any, frame: pd.DataFrame, data: DataSpec) -> dict[str, float]:
    """Holdout metrics; AUC and log loss need both classes, which the training gate guarantees."""
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

    y = frame[data.label_column].astype(int).to_numpy()
    if len(np.unique(y)) < 2:
        raise DataError(f"holdout of {len(y)} rows has a single class in '{data.label_column}': cannot score")
    probability = model.predict_proba(frame[data.feature_names])[:, 1]
    predicted = (probability >= 0.5).astype(int)
    return {
        "roc_auc": float(roc_auc_score(y, probability)),
        "accuracy": float(accuracy_score(y, predicted)),
        "f1": float(f1_score(y, predicted, zero_division=0)),
        "log_loss": float(log_loss(y, probability, labels=[0, 1])),
    }
