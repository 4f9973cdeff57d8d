"""Training, the challenger gate and the MLflow registry contract (aliases, lineage, idempotence)."""

import importlib.util
import sys
from datetime import date
from types import SimpleNamespace

import pandas as pd
import pytest

from airflow_mlops import task_types
from airflow_mlops.contracts import Tag
from airflow_mlops.spec import MetricThresholdSpec, ModelSpec, SpecError
from airflow_mlops.steps import registry, training
from airflow_mlops.storage import DataError
from tests.conftest import register_candidate


@pytest.fixture
def mlflow_target(tmp_path) -> registry.MlflowTarget:
    return registry.MlflowTarget(f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_location=(tmp_path / "art").as_uri())


def test_time_split_holds_out_the_last_days(labelled, spec):
    split = training.time_split(labelled, "event_timestamp", 2)
    assert split.holdout["event_timestamp"].min() > split.train["event_timestamp"].max()
    assert split.holdout["event_timestamp"].dt.date.nunique() == 2


def test_time_split_too_short_is_explained(labelled):
    one_day = labelled[labelled["event_timestamp"] == labelled["event_timestamp"].min()]
    with pytest.raises(DataError, match="holdout_days=1: 0 training rows"):
        training.time_split(one_day, "event_timestamp", 1)


@pytest.mark.parametrize("trainer", ["sklearn_gradient_boosting", "sklearn_logistic_regression", "torch_mlp"])
def test_each_trainer_learns_the_signal(labelled, spec, trainer):
    if trainer == "torch_mlp":
        pytest.importorskip("torch", reason="the torch extra is not installed here")
    params = {"epochs": 20} if trainer == "torch_mlp" else {}
    split = training.time_split(labelled, "event_timestamp", 2)
    model = training.fit(ModelSpec(trainer=trainer, params=params), spec.data, split.train)
    metrics = training.evaluate(model, split.holdout, spec.data)
    assert metrics["roc_auc"] > 0.65, metrics
    assert set(metrics) == {"roc_auc", "accuracy", "f1", "log_loss"}


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="the torch extra is installed here")
def test_torch_trainer_without_torch_names_the_extra(labelled, spec):
    with pytest.raises(SpecError, match=r"trainer 'torch_mlp' needs PyTorch.*pip install 'airflow-mlops\[torch\]'"):
        training.fit(ModelSpec(trainer="torch_mlp"), spec.data, labelled)


def test_a_torch_model_loaded_without_torch_names_the_extra(monkeypatch):
    """A torch_mlp champion unpickled on a worker without torch (scoring, the gate): the same clear error."""
    import mlflow

    def without_torch(uri):
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    monkeypatch.setattr(mlflow, "pyfunc", SimpleNamespace(load_model=without_torch))
    with pytest.raises(SpecError, match=r"model models:/churn_model/3 needs PyTorch.*airflow-mlops\[torch\]"):
        training.load_model("models:/churn_model/3")


def test_bad_trainer_params_are_named(labelled, spec):
    with pytest.raises(ValueError, match=r"training\.model\.params .*max_depthh"):
        training.fit(ModelSpec(trainer="sklearn_logistic_regression", params={"max_depthh": 3}), spec.data, labelled)


THRESHOLDS = {"roc_auc": MetricThresholdSpec(threshold=0.7, min_absolute_change=0.01)}


def test_gate_first_model_uses_absolute_thresholds_only():
    assert registry.gate(THRESHOLDS, {"roc_auc": 0.75}, None).promote
    rejected = registry.gate(THRESHOLDS, {"roc_auc": 0.65}, None)
    assert not rejected.promote and "roc_auc" in rejected.reasons[0]


def test_gate_against_champion_needs_the_improvement():
    assert registry.gate(THRESHOLDS, {"roc_auc": 0.80}, {"roc_auc": 0.78}, "1").promote
    decision = registry.gate(THRESHOLDS, {"roc_auc": 0.785}, {"roc_auc": 0.78}, "1")
    assert not decision.promote
    assert any("roc_auc" in r for r in decision.reasons)


def test_registration_is_idempotent_and_aliases_move(mlflow_target, spec, labelled):
    first = register_candidate(mlflow_target, spec, labelled, "k1")
    again = register_candidate(mlflow_target, spec, labelled, "k1")
    assert again.reused and again.version == first.version == "1"
    client = mlflow_target.client()
    assert client.get_model_version("churn_model", "1").tags["training_set"] == "x"

    assert registry.promote(mlflow_target, "churn_model", "1", "first", gated_against=None).moved
    second = register_candidate(mlflow_target, spec, labelled, "k2", as_of="2026-01-09")
    moved = registry.promote(mlflow_target, "churn_model", second.version, "better", gated_against="1")
    assert moved == registry.Promotion("2", "1", True, "better")
    aliases = client.get_registered_model("churn_model").aliases
    assert {k: str(v) for k, v in aliases.items()} == {"champion": "2", "previous": "1"}
    again = registry.promote(mlflow_target, "churn_model", "2", "again", gated_against="1")  # a retry: no-op
    assert not again.moved and again.champion == "2" and again.previous == "1"

    third = register_candidate(mlflow_target, spec, labelled, "k3", as_of="2026-01-10")
    registry.reject(mlflow_target, "churn_model", third.version, ["roc_auc not better"])
    assert client.get_model_version("churn_model", third.version).tags["decision"] == "rejected"
    assert str(registry.champion_version(mlflow_target, "churn_model").version) == "2"


def test_rollback_goes_back_to_a_former_champion_only(mlflow_target, spec, labelled):
    name = "churn_model"
    with pytest.raises(registry.RollbackRefused, match="no @champion"):
        registry.plan_rollback(mlflow_target, name)
    for key, as_of in (("k1", "2026-01-08"), ("k2", "2026-01-09"), ("k3", "2026-01-10")):
        register_candidate(mlflow_target, spec, labelled, key, as_of=as_of)
    registry.promote(mlflow_target, name, "1", "first", gated_against=None)
    with pytest.raises(registry.RollbackRefused, match="no @previous"):
        registry.plan_rollback(mlflow_target, name)
    registry.promote(mlflow_target, name, "2", "better", gated_against="1")
    registry.reject(mlflow_target, name, "3", ["roc_auc 0.51 below 0.7"])

    with pytest.raises(registry.RollbackRefused, match=r"v3 .*never champion \(rejected: roc_auc 0.51 below 0.7\)"):
        registry.plan_rollback(mlflow_target, name, "3")
    with pytest.raises(registry.RollbackRefused, match="has no version '9'"):
        registry.plan_rollback(mlflow_target, name, "9")
    with pytest.raises(registry.RollbackRefused, match=r"v2 .* is already @champion"):
        registry.plan_rollback(mlflow_target, name, "2")

    plan = registry.plan_rollback(mlflow_target, name)  # default: @previous
    assert plan == registry.RollbackPlan("2", "1")
    # killed after the first alias move: the retry completes the second
    mlflow_target.client().set_registered_model_alias(name, "champion", "1")
    assert registry.rollback(mlflow_target, name, plan, "v2 scores nonsense") == registry.Promotion(
        "1", "2", True, "v2 scores nonsense"
    )
    assert registry.aliases(mlflow_target, name) == {"champion": "1", "previous": "2"}
    left = mlflow_target.client().get_model_version(name, "2").tags
    assert (left["decision"], left["decision_reason"]) == ("rolled_back", "v2 scores nonsense")
    # a retried promotion of v2 (gated against v1, champion again) must not undo the rollback
    again = registry.promote(mlflow_target, name, "2", "better", gated_against="1")
    assert not again.moved and "v2 was rolled back (v2 scores nonsense)" in again.reason
    with pytest.raises(registry.RollbackRefused, match=r"@previous v2 .* was rolled back .*name it \(--to 2\)"):
        registry.plan_rollback(mlflow_target, name)  # a repeated default rollback would undo the first
    assert registry.plan_rollback(mlflow_target, name, "2") == registry.RollbackPlan("1", "2")  # by name: yes

    stale = registry.RollbackPlan("1", "2")
    registry.promote(mlflow_target, name, "3", "forced for the test", gated_against="1")
    with pytest.raises(registry.RollbackRefused, match="moved to v3 after the rollback from v1 was planned"):
        registry.rollback(mlflow_target, name, stale, "too late")
    assert registry.aliases(mlflow_target, name) == {"champion": "3", "previous": "1"}


def test_a_challenger_in_shadow_leaves_the_champion_and_replaces_an_older_challenger(mlflow_target, spec, labelled):
    name = "churn_model"
    for key, as_of in (("k1", "2026-01-08"), ("k2", "2026-01-09"), ("k3", "2026-01-10")):
        register_candidate(mlflow_target, spec, labelled, key, as_of=as_of)
    registry.promote(mlflow_target, name, "1", "first", gated_against=None)
    since = date(2026, 1, 10)
    started = registry.start_shadow(mlflow_target, name, "2", "passed roc_auc", gated_against="1", since=since)
    assert started.moved and started.champion == "1" and "v2 shadows champion v1" in started.reason
    assert registry.aliases(mlflow_target, name) == {"champion": "1", "challenger": "2"}
    tags = mlflow_target.client().get_model_version(name, "2").tags
    assert (tags["decision"], tags["shadow_since"]) == ("shadow", "2026-01-10")
    assert not registry.start_shadow(mlflow_target, name, "2", "retried", gated_against="1", since=since).moved
    # gated against a champion that is no longer champion: stale, rejected, nothing moves
    stale = registry.start_shadow(mlflow_target, name, "3", "passed", gated_against="2", since=since)
    assert not stale.moved and "the champion is now v1" in stale.reason
    assert registry.aliases(mlflow_target, name)["challenger"] == "2"
    # a newer challenger replaces the one in shadow, which is rejected
    mlflow_target.client().delete_model_version_tag(name, "3", "decision")
    assert registry.start_shadow(mlflow_target, name, "3", "passed", gated_against="1", since=since).moved
    assert mlflow_target.client().get_model_version(name, "2").tags["decision_reason"] == "replaced in shadow by v3"
    registry.end_shadow(mlflow_target, name, "2")  # not the challenger any more: nothing happens
    assert registry.aliases(mlflow_target, name)["challenger"] == "3"
    registry.end_shadow(mlflow_target, name, "3")
    assert registry.aliases(mlflow_target, name) == {"champion": "1"}
    with pytest.raises(registry.RollbackRefused, match=r"v2 .*never champion \(rejected: replaced in shadow"):
        registry.plan_rollback(mlflow_target, name, "2")


def test_infra_validation_loads_in_a_fresh_process(mlflow_target, spec, labelled):
    candidate = register_candidate(mlflow_target, spec, labelled, "k1")
    result = registry.infra_validate(
        mlflow_target, candidate.model_uri, labelled[spec.data.feature_names].head(7), spec.data
    )
    assert result["rows"] == 7 and result["problem"] is None
    with pytest.raises(RuntimeError, match="failed to load or score"):
        registry.infra_validate(
            mlflow_target, "models:/churn_model/99", labelled[spec.data.feature_names].head(2), spec.data
        )


@pytest.mark.parametrize(
    ("task", "trainer"),
    [
        *(("regression", t) for t in ("sklearn_gradient_boosting", "sklearn_ridge", "torch_mlp")),
        *(("multiclass", t) for t in ("sklearn_gradient_boosting", "sklearn_logistic_regression", "torch_mlp")),
    ],
)
def test_each_trainer_learns_the_rides_counts_and_demand_levels(request, task, trainer):
    """Every metric of the task beats the best constant prediction, and by a clear margin on one."""
    if trainer == "torch_mlp":
        pytest.importorskip("torch", reason="the torch extra is not installed here")
    name = "rides" if task == "regression" else "demand"
    spec, labelled = request.getfixturevalue(f"{name}_spec"), request.getfixturevalue(f"{name}_labelled")
    data = spec.data
    split = training.time_split(labelled, "event_timestamp", 3)
    params = {"epochs": 40} if trainer == "torch_mlp" else {}
    metrics = training.evaluate(
        training.fit(ModelSpec(trainer=trainer, params=params), data, split.train), split.holdout, data
    )
    y = task_types.label_values(data, split.holdout[data.label_column])
    train = task_types.label_values(data, split.train[data.label_column])
    constant = task_types.metrics(data, y, task_types.constant_scores(data, train, len(y)))
    assert set(metrics) == set(task_types.METRICS[task])
    assert all(task_types.better(m, metrics[m], constant[m]) for m in metrics), (metrics, constant)
    skill, bar = {"regression": ("r2", 0.6), "multiclass": ("roc_auc_ovr", 0.8)}[task]
    assert metrics[skill] > bar, metrics


def test_a_class_missing_before_the_holdout_is_named_before_any_fit(demand_spec, demand_labelled):
    split = training.time_split(demand_labelled, "event_timestamp", 3)
    only_in_holdout = split.train[split.train["demand_level"] != "high"]
    missing = r"rows before the holdout \(training.holdout_days\): no row of class\(es\) \['high'\]"
    with pytest.raises(DataError, match=missing):
        training.fit(demand_spec.training.model, demand_spec.data, only_in_holdout)


def test_a_multiclass_model_scores_every_class_and_names_the_likeliest(mlflow_target, demand_spec, demand_labelled):
    from airflow_mlops.steps.monitoring import score

    candidate = register_candidate(mlflow_target, demand_spec, demand_labelled, "m1")
    day = demand_labelled[demand_labelled["event_timestamp"] == demand_labelled["event_timestamp"].max()]
    scored = score(training.load_model(candidate.model_uri), day, demand_spec, candidate.version)  # pyfunc
    probabilities = scored[["score_low", "score_medium", "score_high"]].to_numpy()
    fitted = training.load_model(candidate.model_uri, "sklearn")
    assert probabilities == pytest.approx(fitted.predict_proba(training.model_input(day, demand_spec.data)))
    assert (scored["prediction"] == pd.Series(["low", "medium", "high"])[probabilities.argmax(axis=1)].to_numpy()).all()
    assert (scored["prediction"] == day["demand_level"].to_numpy()).mean() > 0.6
    sample = training.model_input(day, demand_spec.data)
    assert registry.infra_validate(mlflow_target, candidate.model_uri, sample, demand_spec.data)["problem"] is None


def test_models_of_another_task_are_never_gated_against_nor_rolled_back_to(
    mlflow_target, storage, spec, labelled, rides_spec, rides_labelled
):
    """A spec that changes data.task but keeps its registered model: the new task's candidate is not
    compared with the old champion, and a rollback never crosses tasks."""
    name = spec.registered_model_name
    first = register_candidate(mlflow_target, spec, labelled, "b1").version
    registry.promote(mlflow_target, name, first, "first", gated_against=None)
    counts = register_candidate(mlflow_target, rides_spec, rides_labelled, "r1", model_name=name)
    assert mlflow_target.client().get_model_version(name, counts.version).tags[Tag.TASK] == "regression"
    key = "training_sets/rides/x.parquet"
    storage.write_parquet(key, rides_labelled)
    record = {"version": counts.version, "metrics": counts.metrics, "training_set": key}
    same_name = rides_spec.model_copy(
        update={"training": rides_spec.training.model_copy(update={"registered_model": name})}
    )
    with pytest.raises(SpecError, match=rf"@champion v{first} of {name} predicts binary, the spec says regression"):
        registry.challenge(mlflow_target, storage, same_name, record)
    registry.promote(mlflow_target, name, counts.version, "forced", gated_against=first)
    with pytest.raises(registry.RollbackRefused, match=f"v{first} of {name} predicts binary, @champion v2 regression"):
        registry.plan_rollback(mlflow_target, name)


def test_a_regressor_registers_and_scores_predicted_values_and_infra_validation_checks_them_for_the_task(
    mlflow_target, rides_spec, rides_labelled, spec
):
    from airflow_mlops.steps.monitoring import score

    candidate = register_candidate(
        mlflow_target, rides_spec, rides_labelled, "r1", trainer=ModelSpec(trainer="sklearn_ridge")
    )
    day = rides_labelled[rides_labelled["event_timestamp"] == rides_labelled["event_timestamp"].max()]
    fitted = training.load_model(candidate.model_uri, "sklearn")
    scored = score(training.load_model(candidate.model_uri), day, rides_spec, candidate.version)  # pyfunc
    assert scored["score"].to_numpy() == pytest.approx(fitted.predict(training.model_input(day, rides_spec.data)))
    assert scored["score"].max() > 1  # counts, not probabilities
    sample = training.model_input(day, rides_spec.data)
    assert registry.infra_validate(mlflow_target, candidate.model_uri, sample, rides_spec.data)["problem"] is None
    with pytest.raises(RuntimeError, match=r"scored 80 rows: a binary model's output has shape \(80,\), not \(80, 2\)"):
        registry.infra_validate(mlflow_target, candidate.model_uri, sample, spec.data)


def test_model_input_hands_models_numpy_types_whatever_pandas_read(spec):
    from airflow_mlops.spec import Column

    kinds = {"a": "int32", "b": "float32", "c": "bool", "d": "category", "e": "bool", "f": "int64"}
    data = spec.data.model_copy(update={"features": [Column(name=n, dtype=k) for n, k in kinds.items()]})
    frame = pd.DataFrame(
        {
            "a": pd.array([1, None], dtype="Int32"),
            "b": pd.array([1.5, 2.5], dtype="Float32"),
            "c": pd.array([True, False], dtype="boolean"),
            "d": pd.Categorical(["x", None]),
            "e": pd.array([True, None], dtype="boolean"),
            "f": [3, 4],
        }
    )
    typed = training.model_input(frame, data)
    assert {n: str(t) for n, t in typed.dtypes.items()} == {
        "a": "float64",  # a null: NaN
        "b": "float32",
        "c": "bool",
        "d": "object",
        "e": "object",
        "f": "int64",
    }
    assert typed["d"].tolist() == ["x", None] and typed["e"].tolist() == [True, None]


def test_the_dtypes_people_land_train_register_and_score_through_the_model_signature(mlflow_target, spec, labelled):
    """A pandas categorical, a bool, 32-bit numbers: what the model was registered with is what batch
    scoring (pyfunc, which enforces the signature), infra validation and online scoring hand it."""
    from airflow_mlops.spec import Column
    from airflow_mlops.steps.monitoring import score

    kinds = {"contract_type": "category", "num_products": "int32", "satisfaction_score": "float32"}
    features = [Column(name=c.name, dtype=kinds.get(c.name, c.dtype)) for c in spec.data.features]
    features.append(Column(name="autopay", dtype="bool"))
    typed = spec.model_copy(update={"data": spec.data.model_copy(update={"features": features})})
    frame = labelled.astype({"contract_type": "category", "num_products": "int32", "satisfaction_score": "float32"})
    frame["autopay"] = frame["customer_id"] % 3 == 0
    candidate = register_candidate(mlflow_target, typed, frame, key="dtypes")
    import mlflow

    mlflow_target.client()  # sets the tracking and registry URIs
    inputs = mlflow.models.get_model_info(candidate.model_uri).signature.inputs.input_dict()
    assert {n: str(inputs[n].type) for n in kinds | {"autopay": ""}} == {
        "contract_type": "DataType.string",
        "num_products": "DataType.integer",
        "satisfaction_score": "DataType.float",
        "autopay": "DataType.boolean",
    }
    model = training.load_model(candidate.model_uri)
    day = frame.tail(50)
    assert isinstance(day["contract_type"].dtype, pd.CategoricalDtype)
    scored = score(model, day, typed, candidate.version)  # MLflow's schema check used to refuse category here
    assert scored["score"].between(0, 1).all() and len(scored) == 50
    result = registry.infra_validate(
        mlflow_target, candidate.model_uri, training.model_input(day, typed.data), typed.data
    )
    assert result["problem"] is None and result["rows"] == 50


def test_a_rerun_reuses_its_version_but_a_changed_model_or_holdout_trains_anew(mlflow_target, spec, labelled, storage):
    storage.write_parquet("training_sets/set.parquet", labelled)
    record = {"key": "training_sets/set.parquet", "as_of": "2026-01-08", "fingerprint": registry.fingerprint(labelled)}

    def with_training(**changes):
        return spec.model_copy(update={"training": spec.training.model_copy(update=changes)})

    def train(changed, code_version="1.0"):
        lineage = training.Lineage(trigger="test", dag_id="churn_training", run_id="r", code_version=code_version)
        return training.train_candidate(mlflow_target, storage, changed, record, lineage)

    base = with_training(model=ModelSpec(trainer="sklearn_logistic_regression"))
    first = train(base)
    again = train(base)
    assert again["reused"] and again["version"] == first["version"]
    tuned = with_training(model=ModelSpec(trainer="sklearn_logistic_regression", params={"C": 0.1}))
    shorter = with_training(model=base.training.model, holdout_days=2)
    versions = [first["version"], train(tuned)["version"], train(shorter)["version"], train(base, "1.1")["version"]]
    assert len(set(versions)) == 4


# -- trainers of your own -----------------------------------------------------------------------------------

OWN_TRAINERS = '''
"""Trainers defined outside airflow-mlops, as a user's package would: the model holds a class of it."""
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from airflow_mlops.steps.training import dense_encoder


class Forest(RandomForestClassifier):
    pass


class Clip(TransformerMixin, BaseEstimator):
    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return X.clip(-3, 3)


def clipped(data):
    return make_pipeline(dense_encoder(data), Clip(), LogisticRegression(max_iter=500))


def forest(data, n_estimators=40, max_depth=6):
    return make_pipeline(dense_encoder(data), Forest(n_estimators=n_estimators, max_depth=max_depth, random_state=0))


def not_a_model(data):
    return "a string"


def broken(data):
    raise TypeError("unexpected keyword")
'''


@pytest.fixture
def own_trainers(tmp_path, monkeypatch):
    """``my_trainers`` importable here and in fresh interpreters, with an entry point ``forest``."""
    (tmp_path / "my_trainers.py").write_text(OWN_TRAINERS)
    info = tmp_path / "my_trainers-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-trainers\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[airflow_mlops.trainers]\nforest = my_trainers:forest\n")
    (info / "top_level.txt").write_text("my_trainers\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # for infra validation's fresh interpreter
    yield tmp_path
    sys.modules.pop("my_trainers", None)


# by import path, by entry point, and one whose class of its own is a step before sklearn's estimator
@pytest.mark.parametrize(
    ("trainer", "params"), [("my_trainers:forest", {"n_estimators": 30}), ("forest", {}), ("my_trainers:clipped", {})]
)
def test_a_trainer_of_your_own_trains_registers_and_loads_in_a_fresh_process(
    own_trainers, mlflow_target, spec, labelled, trainer, params
):
    own = ModelSpec(trainer=trainer, params=params)
    candidate = register_candidate(mlflow_target, spec, labelled, f"own-{trainer}", trainer=own)
    assert candidate.metrics["roc_auc"] > 0.65, candidate.metrics
    model = training.load_model(candidate.model_uri, "sklearn")
    assert "my-trainers==0.1" in registry.requirements(model)  # the model needs its trainer's package
    assert training.trainer_packages(trainer) == ["my-trainers==0.1"]  # part of its training key
    result = registry.infra_validate(
        mlflow_target, candidate.model_uri, labelled[spec.data.feature_names].head(5), spec.data
    )
    assert result["problem"] is None and result["rows"] == 5


@pytest.mark.parametrize(
    ("trainer", "params", "message"),
    [
        (
            "no_such_module:build",
            {},
            r"cannot import no_such_module \(ModuleNotFoundError: .*install it on every worker",
        ),
        ("my_trainers:nowhere", {}, r"'my_trainers:nowhere': my_trainers has no nowhere"),
        ("my_trainers:not_a_model", {}, r"returned a str, which has no fit or predict_proba"),
        ("my_trainers:forest", {"trees": 3}, r"params \{'trees': 3\} rejected by my_trainers:forest"),
        ("my_trainers:broken", {}, r"rejected by my_trainers:broken: unexpected keyword"),
    ],
)
def test_a_trainer_that_does_not_import_or_fit_the_contract_is_named(
    own_trainers, spec, labelled, trainer, params, message
):
    with pytest.raises(SpecError, match=message):
        training.fit(ModelSpec(trainer=trainer, params=params), spec.data, labelled)


def test_the_spec_takes_import_paths_and_entry_points_but_names_an_unknown_trainer(own_trainers):
    assert ModelSpec(trainer="some.package:build").trainer == "some.package:build"  # imported when training
    assert ModelSpec(trainer="forest").trainer == "forest"
    with pytest.raises(ValueError, match=r"unknown trainer 'foerst'.*entry point group; installed: forest"):
        ModelSpec(trainer="foerst")
    with pytest.raises(ValueError, match=r"unknown trainer 'pkg:'"):
        ModelSpec(trainer="pkg:")
