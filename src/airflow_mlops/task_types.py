"""What a pipeline's task type (``data.task``) means everywhere: its metrics and which way they improve,
the label it takes, the scores a model gives and how they are stored, and the constant prediction a
model must beat.

``binary``: a 0/1 label; the score is the positive class's probability. ``multiclass``: a label among
``data.classes``; the scores are one probability per class (stored as ``score_<class>``, with the
predicted class as ``prediction`` and its probability as ``score``). ``regression``: a numeric label;
the score is the predicted value. Imported while DAGs are parsed: numpy, pandas and sklearn are
imported inside the functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from airflow_mlops.spec import DataSpec

TaskType = Literal["binary", "multiclass", "regression"]
TASK_TYPES: tuple[TaskType, ...] = ("binary", "multiclass", "regression")

# Each task's metrics, and whether greater is better (MLflow's ``MetricThreshold.greater_is_better``).
METRICS: dict[TaskType, dict[str, bool]] = {
    "binary": {"roc_auc": True, "accuracy": True, "f1": True, "log_loss": False},
    "multiclass": {"f1_macro": True, "accuracy": True, "log_loss": False, "roc_auc_ovr": True},
    "regression": {"rmse": False, "mae": False, "r2": True, "mape": False},
}
ALL_METRICS = tuple(dict.fromkeys(metric for metrics in METRICS.values() for metric in metrics))
PRIMARY_METRIC: dict[TaskType, str] = {"binary": "roc_auc", "multiclass": "f1_macro", "regression": "rmse"}
# What MLflow's pyfunc flavour calls to score; a model of the task has this method besides ``fit`` (a
# trainer of your own is checked for it).
PYFUNC_PREDICT_FN: dict[TaskType, str] = {
    "binary": "predict_proba",
    "multiclass": "predict_proba",
    "regression": "predict",
}


def describe(data: DataSpec) -> str:
    """The task as a model version records it (``Tag.TASK``): models of different tasks never compare."""
    return f"multiclass: {', '.join(str(c) for c in data.classes)}" if data.task == "multiclass" else data.task


def greater_is_better(metric: str) -> bool:
    for metrics in METRICS.values():
        if metric in metrics:
            return metrics[metric]
    raise KeyError(f"unknown metric {metric!r}: one of {', '.join(ALL_METRICS)}")


def better(metric: str, value: float, than: float) -> bool:
    return value > than if greater_is_better(metric) else value < than


def past(metric: str, value: float, limit: float) -> bool:
    """Worse than ``limit`` (a ``min_performance`` floor, or a ceiling for an error metric)."""
    return value < limit if greater_is_better(metric) else value > limit


def _shown(values: list[Any]) -> str:
    return ", ".join(repr(v) for v in values[:5]) + (", ..." if len(values) > 5 else "")


def label_problem(data: DataSpec, label: pd.Series) -> str | None:
    """What makes ``label`` unfit to train the task on (it names what was found), or ``None``."""
    import numpy as np
    import pandas as pd

    values = label.dropna()
    nulls = len(label) - len(values)
    if nulls:
        return f"{nulls} null label(s)"
    if values.empty:
        return "no labels"
    if data.task == "binary":
        found = sorted(pd.unique(values).tolist(), key=str)
        if not set(found) <= {0, 1}:
            return (
                f"a binary label is 0 or 1; found {len(found)} distinct values ({_shown(found)}): map them to 0 "
                "and 1, or declare data.task multiclass (with data.classes) or regression"
            )
        if len(found) < 2:
            return f"a binary label needs both classes; every row is {found[0]!r}"
        return None
    if data.task == "multiclass":
        present = set(class_names(values))
        unknown = sorted(present - set(map(str, data.classes)))
        if unknown:
            return f"{len(unknown)} value(s) not in data.classes {data.classes}: {_shown(unknown)}"
        missing = [c for c in data.classes if str(c) not in present]
        if missing:
            return f"no row of class(es) {missing}: a model learns every class of data.classes"
        return None
    if values.dtype.kind not in "fiub":
        return f"a regression label is a number; found dtype {values.dtype} (e.g. {values.iloc[0]!r})"
    numbers = values.astype(float)
    if not np.isfinite(numbers).all():
        return f"{int((~np.isfinite(numbers)).sum())} infinite label value(s)"
    if numbers.nunique() < 2:
        return f"a regression label must vary; every row is {numbers.iloc[0]}"
    return None


def label_values(data: DataSpec, label: pd.Series) -> np.ndarray:
    """The label as models are fitted and scored on it: 0/1, a class's position in ``data.classes``, or a
    float. Nulls are an error here: drop the rows whose label is not known yet first."""
    from airflow_mlops.storage import DataError

    if label.isna().any():
        raise DataError(f"{int(label.isna().sum())} null value(s) in the label '{label.name}'")
    if data.task == "multiclass":
        position = class_names(label).map({str(c): i for i, c in enumerate(data.classes)})
        if position.isna().any():
            unknown = sorted(set(class_names(label[position.isna()])))
            raise DataError(f"label '{label.name}' holds values not in data.classes {data.classes}: {_shown(unknown)}")
        return position.to_numpy(dtype=int)
    return label.to_numpy(dtype=int if data.task == "binary" else float)


def class_names(label: pd.Series) -> pd.Series:
    """A multiclass label as the text its classes are named by: ``2``, ``2.0`` (an integer column that held
    a null, as parquet reads it back) and ``"2"`` are all class ``"2"``."""
    import pandas as pd

    if label.dtype.kind == "f" and (label.dropna() == label.dropna().round()).all():
        label = label.astype("Int64")
    return pd.Series(label.astype(str), index=label.index, name=label.name)


def scores(data: DataSpec, model: Any, features: pd.DataFrame) -> np.ndarray:
    """A fitted model's scores (sklearn API): the positive class's probability, a row of probabilities
    per class, or the predicted value."""
    return pyfunc_scores(data, getattr(model, PYFUNC_PREDICT_FN[data.task])(features))


def pyfunc_scores(data: DataSpec, output: Any) -> np.ndarray:
    """The scores in what a model's pyfunc ``predict`` (the sklearn method :data:`PYFUNC_PREDICT_FN`)
    returned; an output of another shape raises ``ValueError`` saying so."""
    import numpy as np

    values = np.asarray(output, dtype=float)
    rows = len(values)
    wanted = {"binary": (rows, 2), "multiclass": (rows, len(data.classes)), "regression": (rows,)}[data.task]
    if values.shape != wanted:
        raise ValueError(f"a {data.task} model's output has shape {values.shape}, not {wanted}")
    return values[:, 1] if data.task == "binary" else values


def score_columns(data: DataSpec) -> list[str]:
    """The stored columns that hold the scores, in :func:`scores` order."""
    return [f"score_{c}" for c in data.classes] if data.task == "multiclass" else ["score"]


def score_frame(data: DataSpec, values: np.ndarray) -> dict[str, Any]:
    """The columns stored for scores: ``score``; for multiclass also ``prediction`` (the likeliest class)
    and ``score_<class>``, ``score`` being the likeliest class's probability."""
    import numpy as np

    if data.task != "multiclass":
        return {"score": values}
    best = values.argmax(axis=1)
    return {
        "prediction": np.asarray([str(c) for c in data.classes], dtype=object)[best],
        "score": values.max(axis=1),
        **{column: values[:, i] for i, column in enumerate(score_columns(data))},
    }


def stored_scores(data: DataSpec, frame: pd.DataFrame) -> np.ndarray:
    """The scores of stored predictions, as :func:`scores` gave them."""
    values = frame[score_columns(data)].to_numpy(dtype=float)
    return values if data.task == "multiclass" else values[:, 0]


def scores_problem(data: DataSpec, values: np.ndarray) -> str | None:
    """What is wrong with a model's scores (infra validation, CI), or ``None``."""
    import numpy as np

    values = np.asarray(values, dtype=float)
    if not np.isfinite(values).all():
        return f"{int((~np.isfinite(values)).sum())} score(s) not finite"
    if data.task == "regression":
        return None
    if data.task == "multiclass" and (values.ndim != 2 or values.shape[1] != len(data.classes)):
        return f"{values.shape[-1]} probabilities per row for the {len(data.classes)} classes of data.classes"
    if ((values < 0) | (values > 1)).any():
        return f"probabilities outside [0, 1]: from {values.min()} to {values.max()}"
    if data.task == "multiclass" and not np.allclose(values.sum(axis=1), 1.0, atol=1e-4):
        return "the class probabilities of a row do not sum to 1"
    return None


def scorable(label: np.ndarray) -> bool:
    """Whether metrics can be computed on these labels: two classes, or two distinct values."""
    import numpy as np

    return len(np.unique(label)) >= 2


def metrics(data: DataSpec, label: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """The task's metrics of ``score`` against ``label`` (see :func:`scorable`)."""
    import numpy as np
    from sklearn import metrics as sk

    if data.task == "binary":
        predicted = (np.asarray(score) >= 0.5).astype(int)
        return {
            "roc_auc": float(sk.roc_auc_score(label, score)),
            "accuracy": float(sk.accuracy_score(label, predicted)),
            "f1": float(sk.f1_score(label, predicted, zero_division=0)),
            "log_loss": float(sk.log_loss(label, score, labels=[0, 1])),
        }
    if data.task == "multiclass":
        classes = list(range(len(data.classes)))
        predicted = np.asarray(score).argmax(axis=1)
        # one-vs-rest AUC, averaged over the classes that the labels hold with others beside them
        present = [i for i in classes if 0 < int((label == i).sum()) < len(label)]
        return {
            "f1_macro": float(sk.f1_score(label, predicted, labels=classes, average="macro", zero_division=0)),
            "accuracy": float(sk.accuracy_score(label, predicted)),
            "log_loss": float(sk.log_loss(label, score, labels=classes)),
            "roc_auc_ovr": float(np.mean([sk.roc_auc_score(label == i, score[:, i]) for i in present])),
        }
    return {
        "rmse": float(sk.root_mean_squared_error(label, score)),
        "mae": float(sk.mean_absolute_error(label, score)),
        "r2": float(sk.r2_score(label, score)),
        # sklearn's MAPE divides by max(|y|, eps): a label of 0 makes it huge, as it should be
        "mape": float(sk.mean_absolute_percentage_error(label, score)),
    }


def constant_scores(data: DataSpec, train_label: np.ndarray, rows: int) -> np.ndarray:
    """A constant prediction learnt from the training labels, for a model to beat: the positive rate, each
    class's share, or the mean (the best constant for rmse and r2; for mae the median would be)."""
    import numpy as np

    if data.task == "multiclass":
        shares = np.bincount(np.asarray(train_label), minlength=len(data.classes)) / len(train_label)
        return np.tile(shares, (rows, 1))
    return np.full(rows, float(np.mean(train_label)))
