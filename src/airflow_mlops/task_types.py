"""What a pipeline's task type (``data.task``) means everywhere: its metrics and which way they improve,
the label it takes, the score a model gives, and the constant prediction a model must beat.

``binary``: a 0/1 label; the score is the positive class's probability. ``regression``: a numeric label;
the score is the predicted value. Imported while DAGs are parsed: numpy, pandas and sklearn are imported
inside the functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

TaskType = Literal["binary", "regression"]
TASK_TYPES: tuple[TaskType, ...] = ("binary", "regression")

# Each task's metrics, and whether greater is better (MLflow's ``MetricThreshold.greater_is_better``).
METRICS: dict[TaskType, dict[str, bool]] = {
    "binary": {"roc_auc": True, "accuracy": True, "f1": True, "log_loss": False},
    "regression": {"rmse": False, "mae": False, "r2": True, "mape": False},
}
ALL_METRICS = tuple(metric for metrics in METRICS.values() for metric in metrics)
PRIMARY_METRIC: dict[TaskType, str] = {"binary": "roc_auc", "regression": "rmse"}
# What MLflow's pyfunc flavour calls to score: its output is the score every step stores.
# A model of the task has this method besides ``fit`` (a trainer of your own is checked for it).
PYFUNC_PREDICT_FN: dict[TaskType, str] = {"binary": "predict_proba", "regression": "predict"}


def greater_is_better(metric: str) -> bool:
    return next(metrics[metric] for metrics in METRICS.values() if metric in metrics)


def better(metric: str, value: float, than: float) -> bool:
    return value > than if greater_is_better(metric) else value < than


def past(metric: str, value: float, limit: float) -> bool:
    """Worse than ``limit`` (a ``min_performance`` floor, or a ceiling for an error metric)."""
    return value < limit if greater_is_better(metric) else value > limit


def label_problem(task: TaskType, label: pd.Series) -> str | None:
    """What makes ``label`` unfit to train the task on (it names what was found), or ``None``."""
    import numpy as np
    import pandas as pd

    values = label.dropna()
    nulls = len(label) - len(values)
    if nulls:
        return f"{nulls} null label(s)"
    if task == "binary":
        found = sorted(pd.unique(values).tolist(), key=str)
        if not set(found) <= {0, 1} or len(found) > 2:
            shown = ", ".join(repr(v) for v in found[:5]) + (", ..." if len(found) > 5 else "")
            return f"a binary label is 0 or 1; found {len(found)} distinct values ({shown}): declare data.task"
        if len(found) < 2:
            return f"a binary label needs both classes; every row is {found[0]!r}"
        return None
    if values.dtype.kind not in "fiub":
        return f"a regression label is a number; found dtype {values.dtype} (e.g. {values.iloc[0]!r})"
    numbers = values.astype(float)
    if not np.isfinite(numbers).all():
        return f"{int((~np.isfinite(numbers)).sum())} infinite label value(s)"
    if numbers.nunique() < 2:
        return f"a regression label must vary; every row is {numbers.iloc[0]}"
    return None


def label_values(task: TaskType, label: pd.Series) -> np.ndarray:
    """The label as models are fitted and scored on it."""
    return label.to_numpy(dtype=int if task == "binary" else float)


def scores(task: TaskType, model: Any, features: pd.DataFrame) -> np.ndarray:
    """One score per row from a fitted model (sklearn API): the positive class's probability, or the
    predicted value."""
    import numpy as np

    if task == "binary":
        return np.asarray(model.predict_proba(features), dtype=float)[:, 1]
    return np.asarray(model.predict(features), dtype=float).reshape(len(features))


def scores_problem(task: TaskType, values: np.ndarray) -> str | None:
    """What is wrong with a model's scores (infra validation, CI), or ``None``."""
    import numpy as np

    values = np.asarray(values, dtype=float)
    if not np.isfinite(values).all():
        return f"{int((~np.isfinite(values)).sum())} score(s) not finite"
    if task == "binary" and ((values < 0) | (values > 1)).any():
        return f"probabilities outside [0, 1]: from {values.min()} to {values.max()}"
    return None


def scorable(label: np.ndarray) -> bool:
    """Whether metrics can be computed on these labels: both classes, or two distinct values."""
    import numpy as np

    return len(np.unique(label)) >= 2


def metrics(task: TaskType, label: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """The task's metrics of ``score`` against ``label`` (see :func:`scorable`)."""
    import numpy as np
    from sklearn import metrics as sk

    if task == "binary":
        predicted = (np.asarray(score) >= 0.5).astype(int)
        return {
            "roc_auc": float(sk.roc_auc_score(label, score)),
            "accuracy": float(sk.accuracy_score(label, predicted)),
            "f1": float(sk.f1_score(label, predicted, zero_division=0)),
            "log_loss": float(sk.log_loss(label, score, labels=[0, 1])),
        }
    return {
        "rmse": float(sk.root_mean_squared_error(label, score)),
        "mae": float(sk.mean_absolute_error(label, score)),
        "r2": float(sk.r2_score(label, score)),
        # sklearn's MAPE divides by max(|y|, eps): a label of 0 makes it huge, as it should be
        "mape": float(sk.mean_absolute_percentage_error(label, score)),
    }


def constant_scores(train_label: np.ndarray, rows: int) -> np.ndarray:
    """The best constant prediction learnt from the training labels: the positive rate, or the mean."""
    import numpy as np

    return np.full(rows, float(np.mean(train_label)))
