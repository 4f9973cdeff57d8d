"""The task types' contracts: metric directions, the labels each takes, the scores each gives and stores."""

import numpy as np
import pandas as pd
import pytest

from airflow_mlops import task_types
from airflow_mlops.spec import DataSpec
from airflow_mlops.storage import DataError

CLASSES = ["low", "medium", "high"]


def data_spec(task: str) -> DataSpec:
    return DataSpec(
        raw_path="raw",
        labels_path="labels",
        entity_key="id",
        label_column="y",
        features=[{"name": "x", "dtype": "float64"}],
        task=task,
        classes=CLASSES if task == "multiclass" else [],
    )


def perfect(task: str, label: np.ndarray) -> np.ndarray:
    return np.eye(len(CLASSES))[label] if task == "multiclass" else label.astype(float)


@pytest.mark.parametrize("task", task_types.TASK_TYPES)
def test_a_perfect_model_is_better_than_a_constant_on_every_metric(task):
    data, rng = data_spec(task), np.random.default_rng(0)
    label = {"binary": rng.integers(0, 2, 200), "multiclass": rng.integers(0, 3, 200)}.get(
        task, rng.normal(50, 10, 200)
    )
    best = task_types.metrics(data, label, perfect(task, label))
    constant = task_types.metrics(data, label, task_types.constant_scores(data, label, len(label)))
    assert set(best) == set(task_types.METRICS[task])
    for metric in task_types.METRICS[task]:
        assert task_types.better(metric, best[metric], constant[metric]), metric
        assert task_types.past(metric, constant[metric], best[metric]), metric


def test_the_default_primary_metric_of_each_task_is_one_of_its_own():
    for task in task_types.TASK_TYPES:
        assert task_types.PRIMARY_METRIC[task] in task_types.METRICS[task]


@pytest.mark.parametrize(
    ("task", "label", "problem"),
    [
        ("binary", [0, 1, 1, 0], None),
        ("binary", [True, False], None),
        ("binary", [0.0, 1.0], None),
        ("binary", [0.5, 1.5, 2.0, 7.0], r"a binary label is 0 or 1; found 4 distinct values \(0.5, 1.5, 2.0, 7.0\)"),
        ("binary", ["yes", "no"], "found 2 distinct values"),
        ("binary", [1, 1, 1], "needs both classes; every row is 1"),
        ("binary", [0, None, 1], "1 null label"),
        ("multiclass", ["low", "high", "medium", "low"], None),
        (
            "multiclass",
            ["low", "high", "huge", "tiny"],
            r"2 value\(s\) not in data.classes \['low', 'medium', 'high'\]",
        ),
        ("multiclass", ["low", "high"], r"no row of class\(es\) \['medium'\]: a model learns every class"),
        ("regression", [1.5, 2.0, 30.0], None),
        ("regression", [3, 4, 5], None),
        ("regression", ["12", "13"], "a regression label is a number; found dtype object"),
        ("regression", [4.0, 4.0], "must vary; every row is 4.0"),
        ("regression", [1.0, np.inf], "1 infinite label"),
    ],
)
def test_a_label_that_does_not_fit_the_task_is_described(task, label, problem):
    found = task_types.label_problem(data_spec(task), pd.Series(label))
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert pd.Series([found]).str.contains(problem).all(), found


def test_multiclass_scores_are_stored_per_class_with_the_likeliest_class():
    data = data_spec("multiclass")
    values = np.array([[0.2, 0.5, 0.3], [0.7, 0.1, 0.2]])
    stored = pd.DataFrame(task_types.score_frame(data, values))
    assert list(stored.columns) == ["prediction", "score", "score_low", "score_medium", "score_high"]
    assert stored["prediction"].tolist() == ["medium", "low"] and stored["score"].tolist() == [0.5, 0.7]
    assert (task_types.stored_scores(data, stored) == values).all()
    labels = task_types.label_values(data, pd.Series(["high", "low", "medium"]))
    assert labels.tolist() == [2, 0, 1]
    numbered = data.model_copy(update={"classes": [0, 1, 2]})  # an int label read back as floats (a null)
    assert task_types.label_values(numbered, pd.Series([2.0, 0.0, 1.0], name="y")).tolist() == [2, 0, 1]
    assert task_types.label_problem(numbered, pd.Series([2.0, 0.0, 1.0, None]).dropna()) is None
    with pytest.raises(DataError, match=r"label 'y' holds values not in data.classes \[0, 1, 2\]: '7'"):
        task_types.label_values(numbered, pd.Series([1, 7], name="y"))


def test_scores_are_checked_for_the_task():
    binary, multiclass, regression = (data_spec(t) for t in ("binary", "multiclass", "regression"))
    assert task_types.scores_problem(binary, np.array([0.0, 0.4, 1.0])) is None
    assert "outside [0, 1]" in task_types.scores_problem(binary, np.array([0.2, 1.3]))
    assert task_types.scores_problem(regression, np.array([-4.0, 1300.5])) is None
    assert "1 score(s) not finite" in task_types.scores_problem(regression, np.array([1.0, np.nan]))
    assert task_types.scores_problem(multiclass, np.array([[0.2, 0.5, 0.3]])) is None
    assert "do not sum to 1" in task_types.scores_problem(multiclass, np.array([[0.2, 0.5, 0.5]]))
    assert "2 probabilities per row for the 3 classes" in task_types.scores_problem(multiclass, np.array([[0.5, 0.5]]))
