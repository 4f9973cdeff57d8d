"""The task types' contracts: metric directions, the labels each takes, the scores each gives."""

import numpy as np
import pandas as pd
import pytest

from airflow_mlops import task_types


@pytest.mark.parametrize("task", task_types.TASK_TYPES)
def test_a_perfect_model_is_better_than_a_constant_on_every_metric(task):
    rng = np.random.default_rng(0)
    label = rng.integers(0, 2, 200) if task == "binary" else rng.normal(50, 10, 200)
    perfect = task_types.metrics(task, label, label.astype(float))
    constant = task_types.metrics(task, label, task_types.constant_scores(label, len(label)))
    assert set(perfect) == set(task_types.METRICS[task])
    for metric in task_types.METRICS[task]:
        assert task_types.better(metric, perfect[metric], constant[metric]), metric
        assert task_types.past(metric, constant[metric], perfect[metric]), metric


def test_the_default_primary_metric_of_each_task_is_one_of_its_own():
    for task in task_types.TASK_TYPES:
        assert task_types.PRIMARY_METRIC[task] in task_types.METRICS[task]


@pytest.mark.parametrize(
    ("task", "label", "problem"),
    [
        ("binary", [0, 1, 1, 0], None),
        ("binary", [True, False], None),
        ("binary", [0.5, 1.5, 2.0, 7.0], r"a binary label is 0 or 1; found 4 distinct values \(0.5, 1.5, 2.0, 7.0\)"),
        ("binary", ["yes", "no"], "found 2 distinct values"),
        ("binary", [1, 1, 1], "needs both classes; every row is 1"),
        ("binary", [0, None, 1], "1 null label"),
        ("regression", [1.5, 2.0, 30.0], None),
        ("regression", [3, 4, 5], None),
        ("regression", ["12", "13"], "a regression label is a number; found dtype object"),
        ("regression", [4.0, 4.0], "must vary; every row is 4.0"),
        ("regression", [1.0, np.inf], "1 infinite label"),
    ],
)
def test_a_label_that_does_not_fit_the_task_is_described(task, label, problem):
    found = task_types.label_problem(task, pd.Series(label))
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert pd.Series([found]).str.contains(problem).all(), found


def test_scores_are_checked_for_the_task():
    assert task_types.scores_problem("binary", np.array([0.0, 0.4, 1.0])) is None
    assert "outside [0, 1]" in task_types.scores_problem("binary", np.array([0.2, 1.3]))
    assert task_types.scores_problem("regression", np.array([-4.0, 1300.5])) is None
    assert "1 score(s) not finite" in task_types.scores_problem("regression", np.array([1.0, np.nan]))
