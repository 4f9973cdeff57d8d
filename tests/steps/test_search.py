"""Hyperparameter search: Optuna's suggestions round by round, trials as nested MLflow runs on the validation
days, the best trial's params training the candidate, retries, and a space that does not fit its trainer."""

from typing import Any

import pandas as pd
import pytest

from airflow_mlops.contracts import Tag, TrainingSetRecord, TrialResult
from airflow_mlops.spec import ModelSpec, PipelineSpec, SearchSpec, SpecError
from airflow_mlops.steps import registry, search, training
from airflow_mlops.storage import DataError

SPACE = {
    "learning_rate": {"type": "float", "low": 0.02, "high": 0.5, "log": True},
    "max_leaf_nodes": {"type": "int", "low": 4, "high": 32},
    "l2_regularization": {"type": "categorical", "choices": [0.0, 1.0]},
}


def searching(spec: PipelineSpec, model: dict[str, Any] | None = None, **settings: Any) -> PipelineSpec:
    """The demo spec, fitted to the 8-day training set, searching SPACE (or ``settings["space"]``)."""
    plan = SearchSpec.model_validate({"space": SPACE, "trials": 4, "parallel": 2, "validation_days": 2, **settings})
    fixed = ModelSpec.model_validate(model or {"trainer": "sklearn_gradient_boosting", "params": {"max_iter": 30}})
    changes = {"holdout_days": 2, "window_days": 8, "model": fixed, "search": plan}
    return spec.model_copy(update={"training": spec.training.model_copy(update=changes)})


@pytest.fixture
def mlflow_target(tmp_path) -> registry.MlflowTarget:
    return registry.MlflowTarget(f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_location=(tmp_path / "art").as_uri())


@pytest.fixture
def training_set(storage, labelled) -> TrainingSetRecord:
    storage.write_parquet("training_sets/set.parquet", labelled)
    fingerprint = registry.fingerprint(labelled)
    return {"key": "training_sets/set.parquet", "as_of": "2026-01-08", "rows": len(labelled), "labels": len(labelled),
            "fingerprint": fingerprint, "label_mean": None}  # fmt: skip


def run_search(target, storage, spec, training_set) -> tuple[list[list[TrialResult]], Any]:
    rounds: list[list[TrialResult]] = []
    for number in range(1, spec.training.search.rounds + 1):
        done = [result for results in rounds for result in results]
        planned = search.plan_round(target, storage, spec, training_set, "1.0", done, number)
        rounds.append([search.run_trial(target, storage, spec, training_set, trial) for trial in planned])
    return rounds, search.pick_best(target, spec, [result for results in rounds for result in results])


def test_suggestions_are_in_the_space_the_same_on_a_retry_and_new_each_round(spec):
    searched = searching(spec, trials=5, parallel=2)
    first = search.suggest(searched, [], 1)
    assert first == search.suggest(searched, [], 1) and len(first) == 2
    for params in first:
        assert 0.02 <= params["learning_rate"] <= 0.5 and isinstance(params["max_leaf_nodes"], int)
        assert 4 <= params["max_leaf_nodes"] <= 32 and params["l2_regularization"] in (0.0, 1.0)
    done: list[Any] = [{"number": n, "params": p, "value": 0.7 + n / 100} for n, p in enumerate(first)]
    second = search.suggest(searched, done, 2)
    assert len(second) == 2 and second != first
    last = search.suggest(searched, done + [{**done[0], "number": n} for n in (2, 3)], 3)
    assert len(last) == 1  # 5 trials: two rounds of 2, then the one left


def test_tpe_told_a_clear_winner_searches_near_it(spec):
    searched = searching(spec, space={"learning_rate": {"type": "float", "low": 0.0, "high": 1.0}}, trials=30,
                         parallel=10, seed=3)  # fmt: skip
    told = [{"number": n, "params": {"learning_rate": n / 20}, "value": -abs(n / 20 - 0.2)} for n in range(20)]
    suggested = [p["learning_rate"] for p in search.suggest(searched, told, 3)]
    assert abs(pd.Series(suggested).median() - 0.2) < 0.15, suggested  # roc_auc: greater is better


def test_a_search_runs_nested_trials_on_the_validation_days_and_tunes_the_candidate(
    mlflow_target, storage, spec, training_set
):
    searched = searching(spec)
    rounds, best = run_search(mlflow_target, storage, searched, training_set)
    results = [result for results in rounds for result in results]
    assert [r["number"] for r in results] == [0, 1, 2, 3]
    assert best["value"] == max(r["value"] for r in results) and best["trials"] == 4
    assert best["params"] == next(r["params"] for r in results if r["number"] == best["trial"])

    client = mlflow_target.client()
    parent = client.get_run(best["run_id"])
    assert parent.info.status == "FINISHED" and parent.data.params["best_trial"] == str(best["trial"])
    assert parent.data.metrics["best_validation_roc_auc"] == best["value"]
    for result in results:
        trial = client.get_run(result["run_id"])
        assert trial.data.tags[search.PARENT_RUN] == best["run_id"] and trial.info.status == "FINISHED"
        # trained on the days before the validation days, which end before the gate's holdout
        assert trial.data.params["validation_start"] == "2026-01-05" and trial.data.params["max_iter"] == "30"
        assert trial.data.metrics["validation_roc_auc"] == result["value"]

    lineage = training.Lineage(trigger="test", dag_id="churn_training", run_id="r", code_version="1.0")
    candidate = training.train_candidate(mlflow_target, storage, searched, training_set, lineage, search=best)
    run = client.get_run(candidate["run_id"])
    assert run.data.params["learning_rate"] == str(best["params"]["learning_rate"])
    assert run.data.params["max_iter"] == "30" and run.data.params["holdout_start"] == "2026-01-07"
    assert run.data.tags[Tag.SEARCH_RUN] == best["run_id"]
    again = training.train_candidate(mlflow_target, storage, searched, training_set, lineage, search=best)
    assert again["reused"] and again["version"] == candidate["version"]


def test_a_retried_round_or_trial_repeats_nothing(mlflow_target, storage, spec, training_set, monkeypatch):
    searched = searching(spec, trials=2, parallel=2)
    planned = search.plan_round(mlflow_target, storage, searched, training_set, "1.0", [], 1)
    assert search.plan_round(mlflow_target, storage, searched, training_set, "1.0", [], 1) == planned  # same parent run
    # a killed attempt left trial 0's run RUNNING: the retry marks it KILLED and runs the trial anew
    client = mlflow_target.client()
    experiment = client.get_run(planned[0]["search_run"]).info.experiment_id
    ghost = client.create_run(experiment, tags={search.PARENT_RUN: planned[0]["search_run"], Tag.TRIAL: "0"})
    first = search.run_trial(mlflow_target, storage, searched, training_set, planned[0])
    assert client.get_run(ghost.info.run_id).info.status == "KILLED"

    def no_fit(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a finished trial was fitted again")

    monkeypatch.setattr(training, "fit", no_fit)
    assert search.run_trial(mlflow_target, storage, searched, training_set, planned[0]) == first


def test_a_space_the_trainer_does_not_take_fails_before_any_trial(mlflow_target, storage, spec, training_set):
    space = {
        "learning_rat": {"type": "float", "low": 0.01, "high": 0.1},
        "max_depth": {"type": "int", "low": 2, "high": 4},
    }
    refused = r"^training.search.space learning_rat: not a parameter of training.model.trainer 'sklearn_gradient_"
    with pytest.raises(SpecError, match=refused):
        search.plan_round(mlflow_target, storage, searching(spec, space=space), training_set, "1.0", [], 1)
    assert not mlflow_target.client().search_experiments(filter_string="name = 'churn'")  # nothing logged


def test_a_value_the_trainer_refuses_fails_its_trial_naming_it(mlflow_target, storage, spec, training_set):
    searched = searching(spec, space={"max_leaf_nodes": {"type": "int", "low": -4, "high": -2}})
    [trial, _] = search.plan_round(mlflow_target, storage, searched, training_set, "1.0", [], 1)
    refused = r"training.search trial 0: sklearn_gradient_boosting refused \{'max_leaf_nodes': -\d\} from "
    estimator = r"training.search.space: The 'max_leaf_nodes' parameter of HistGradientBoostingClassifier"
    with pytest.raises(SpecError, match=refused + estimator):
        search.run_trial(mlflow_target, storage, searched, training_set, trial)
    client = mlflow_target.client()
    experiment = client.get_run(trial["search_run"]).info.experiment_id
    [failed] = client.search_runs([experiment], f"tags.`{Tag.TRIAL}` = '0'")
    assert failed.info.status == "FAILED"


def test_too_many_validation_days_for_the_training_set_fail_before_any_trial(
    mlflow_target, storage, spec, training_set
):
    searched = searching(spec, validation_days=6)  # 8 days: 2 of holdout, 6 of validation, none to train on
    searched = searched.model_copy(update={"training": searched.training.model_copy(update={"window_days": 9})})
    too_many = r"training\.search\.validation_days=6: 0 training rows, \d+ rows in the last 6 days"
    with pytest.raises(DataError, match=too_many):
        search.plan_round(mlflow_target, storage, searched, training_set, "1.0", [], 1)
