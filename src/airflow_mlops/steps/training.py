"""Train and evaluate: a time-based holdout, an sklearn pipeline per trainer, metrics on the holdout.

Every built-in trainer is an sklearn ``Pipeline`` (preprocessing + estimator, a classifier or a regressor
as ``data.task`` says), so MLflow logs, loads and serves all of them the same way, the torch one included.
A trainer of your own (see :func:`resolve_trainer`) returns any sklearn-compatible estimator of the raw
feature columns; it is logged, loaded and served the same way.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from airflow_mlops import task_types
from airflow_mlops.contracts import CandidateRecord, SearchRecord, Tag, TrainingSetRecord
from airflow_mlops.spec import TRAINER_ENTRY_POINTS, TRAINERS, DataSpec, ModelSpec, PipelineSpec, SpecError
from airflow_mlops.storage import DataError

if TYPE_CHECKING:
    from airflow_mlops.steps.registry import Candidate, MlflowTarget
    from airflow_mlops.storage import Storage


# the days a fit does not see, and the spec key that sets how many
HELD_OUT = {"holdout": "training.holdout_days", "validation days": "training.search.validation_days"}
TRAINED_MODEL = "model_spec.json"  # a candidate run's artifact: the trainer and params it was fitted with


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    holdout: pd.DataFrame
    holdout_start: pd.Timestamp


def time_split(
    frame: pd.DataFrame, timestamp_column: str, holdout_days: int, key: str = "training.holdout_days"
) -> Split:
    """The last ``holdout_days`` days (the spec's ``key``) are the holdout: the model is judged on the
    future it did not see."""
    if frame.empty:
        raise DataError("training set is empty: no labelled rows in the training window")
    timestamps = pd.to_datetime(frame[timestamp_column], utc=True)
    start = timestamps.max().normalize() - timedelta(days=holdout_days - 1)
    in_holdout = timestamps >= start
    train, holdout = frame[~in_holdout], frame[in_holdout]
    if train.empty or holdout.empty:
        raise DataError(
            f"cannot split training set on '{timestamp_column}' with {key}={holdout_days}: "
            f"{len(train)} training rows, {len(holdout)} rows in the last {holdout_days} days "
            f"(data spans {timestamps.min().date()} to {timestamps.max().date()})"
        )
    return Split(train.reset_index(drop=True), holdout.reset_index(drop=True), start)


def build_model(model: ModelSpec, data: DataSpec) -> Any:
    """An unfitted model for the spec's trainer: a built-in sklearn pipeline, or what a trainer of your
    own returns (checked against the contract of :func:`resolve_trainer`)."""
    if model.trainer not in TRAINERS:
        return plugged_in(model, data)
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    numerical, categorical, regression = data.numerical, data.categorical, data.task == "regression"
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
        boosting = HistGradientBoostingRegressor if regression else HistGradientBoostingClassifier
        return Pipeline([("encode", encode), ("model", boosting(**{**params, **model.params}))])

    dense = dense_encoder(data)
    if model.trainer == "sklearn_logistic_regression":
        return Pipeline([("encode", dense), ("model", LogisticRegression(**{"max_iter": 1000, **model.params}))])
    if model.trainer == "sklearn_ridge":
        return Pipeline([("encode", dense), ("model", Ridge(**model.params))])

    if importlib.util.find_spec("torch") is None:  # checked before fitting, not an epoch into it
        raise torch_missing(f"trainer '{model.trainer}'")
    from airflow_mlops.steps.torch_mlp import TorchMLPClassifier, TorchMLPRegressor

    network = TorchMLPRegressor if regression else TorchMLPClassifier
    return Pipeline([("encode", dense), ("model", network(**model.params))])


def dense_encoder(data: DataSpec) -> Any:
    """The built-in preprocessing of the raw feature columns, for trainers of your own too: numerical
    columns median-imputed and scaled, ``string`` columns one-hot encoded (unseen categories ignored)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    return ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), data.numerical),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), data.categorical),
        ]
    )


def resolve_trainer(trainer: str) -> Any:
    """The function behind a trainer of your own: ``package.module:function``, or the name of an entry
    point in the ``airflow_mlops.trainers`` group (whose value is such a path).

    The contract: ``function(data, **params)`` gets the spec's ``data`` section (:class:`DataSpec`: feature
    names, ``numerical``, ``categorical``, the label, ``task``) and ``training.model.params``, and returns an
    unfitted sklearn-compatible estimator of the raw feature columns, picklable with cloudpickle: for a
    ``binary`` task a classifier, ``fit(X, y)`` with ``y`` 0/1 and ``predict_proba(X)`` of shape ``(n, 2)``;
    for ``regression`` a regressor, ``fit(X, y)`` with float ``y`` and ``predict(X)`` of shape ``(n,)``.
    Its module must be importable wherever the model is trained, gated, validated and scored. Bad params
    raise ``TypeError``.
    """
    from importlib import import_module
    from importlib.metadata import entry_points

    where = f"training.model.trainer {trainer!r}"
    path = trainer
    if ":" not in trainer:
        found = entry_points(group=TRAINER_ENTRY_POINTS, name=trainer)
        if not found:
            raise SpecError(f"{where}: no such entry point in the '{TRAINER_ENTRY_POINTS}' group here")
        path = next(iter(found)).value
    module_name, _, attribute = path.partition(":")
    try:
        found_object: Any = import_module(module_name)
    except Exception as exc:  # any error while importing user code: the trainer is unusable here
        raise SpecError(
            f"{where}: cannot import {module_name} ({type(exc).__name__}: {exc}); install it on every worker "
            "that trains, validates or scores the model"
        ) from exc
    for part in attribute.split("."):
        if not hasattr(found_object, part):
            raise SpecError(f"{where}: {module_name} has no {attribute}")
        found_object = getattr(found_object, part)
    if not callable(found_object):
        raise SpecError(f"{where}: {path} is a {type(found_object).__name__}, not a function")
    return found_object


def trainer_packages(trainer: str) -> list[str]:
    """``name==version`` of the installed distributions a trainer of your own comes from (none for a loose
    module), found without importing it."""
    from importlib.metadata import entry_points, packages_distributions, version

    path = trainer
    if ":" not in trainer:
        found = entry_points(group=TRAINER_ENTRY_POINTS, name=trainer)
        path = next(iter(found)).value if found else trainer
    top = path.partition(":")[0].split(".")[0]
    return sorted(f"{name}=={version(name)}" for name in set(packages_distributions().get(top, [])))


def plugged_in(model: ModelSpec, data: DataSpec) -> Any:
    """The unfitted estimator a trainer of your own builds, once it is shown to have the methods needed."""
    estimator = resolve_trainer(model.trainer)(data, **model.params)
    needed = ("fit", task_types.PYFUNC_PREDICT_FN[data.task])
    missing = [method for method in needed if not callable(getattr(estimator, method, None))]
    if missing:
        kind = "regressor" if data.task == "regression" else "classifier"
        raise SpecError(
            f"training.model.trainer {model.trainer!r} returned a {type(estimator).__name__}, which has no "
            f"{' or '.join(missing)}: for a {data.task} task a trainer returns an unfitted sklearn-compatible {kind}"
        )
    return estimator


def torch_missing(what: str) -> SpecError:
    """The error for a torch_mlp model on a worker without the ``torch`` extra: it names the extra."""
    return SpecError(
        f"{what} needs PyTorch, which is not installed here: pip install 'airflow-mlops[torch]' on every "
        "worker that trains, validates or scores torch_mlp models"
    )


def load_model(model_uri: str, flavor: Literal["sklearn", "pyfunc"] = "pyfunc") -> Any:
    """A registered model, through MLflow's sklearn or pyfunc flavor; a torch_mlp model on a worker
    without torch fails with :func:`torch_missing`, not a bare ``ModuleNotFoundError``."""
    import mlflow

    try:
        return mlflow.sklearn.load_model(model_uri) if flavor == "sklearn" else mlflow.pyfunc.load_model(model_uri)
    except ModuleNotFoundError as exc:
        if exc.name == "torch":
            raise torch_missing(f"model {model_uri}") from exc
        if (exc.name or "").split(".")[0] in ("mlflow", "airflow_mlops"):  # our own install is broken
            raise
        raise SpecError(
            f"model {model_uri} needs the module {exc.name}, which is not installed here: install its "
            "trainer's package on every worker that trains, validates or scores it"
        ) from exc


def model_input(frame: pd.DataFrame, data: DataSpec) -> pd.DataFrame:
    """The feature columns as every model of a pipeline sees them, in training, in its signature, in infra
    validation and in batch scoring: numpy types, never pandas' nullable or categorical ones (which
    estimators reject and MLflow's signature check refuses): categorical features as Python objects (None
    for a null), numbers as numpy numbers (NaN for a null float)."""
    columns = frame[data.feature_names].copy()
    for column in data.features:
        values = columns[column.name]
        if column.dtype == "bool" and not values.isna().any():
            columns[column.name] = values.astype(bool)
        elif column.categorical:
            if values.dtype != object:
                columns[column.name] = values.astype(object).where(values.notna(), None)
        elif isinstance(values.dtype, pd.api.extensions.ExtensionDtype):  # Int32, Float32 (nullable)
            numpy = values.dtype.numpy_dtype if hasattr(values.dtype, "numpy_dtype") else np.dtype("float64")
            columns[column.name] = values.astype("float64" if values.isna().any() else numpy)
    return columns


def fit(model: ModelSpec, data: DataSpec, train: pd.DataFrame, before: str = "holdout") -> Any:
    """Fit the spec's model on ``train``: the rows before the ``holdout`` (or the search's ``validation``
    days), whose label must fit the task on its own: the gate checked the whole training set, and a class
    seen only in the days held out is unlearnable."""
    problem = task_types.label_problem(data, train[data.label_column])
    if problem:
        key = HELD_OUT[before]
        raise DataError(
            f"the {len(train)} training rows before the {before} ({key}): {problem}; give training.window_days "
            f"more days or {key} fewer"
        )
    try:  # unknown or ill-typed trainer params surface as TypeErrors from the estimator
        pipeline = build_model(model, data)
        pipeline.fit(model_input(train, data), task_types.label_values(data, train[data.label_column]))
    except TypeError as exc:
        raise SpecError(f"training.model.params {model.params} rejected by {model.trainer}: {exc}") from exc
    return pipeline


def evaluate(model: Any, frame: pd.DataFrame, data: DataSpec, part: str = "holdout") -> dict[str, float]:
    """The task's metrics on the holdout (or another ``part`` held out), which must hold both classes (or
    two distinct values)."""
    y = task_types.label_values(data, frame[data.label_column])
    if not task_types.scorable(y):
        raise DataError(f"{part} of {len(y)} rows has a single value in '{data.label_column}': cannot score")
    return task_types.metrics(data, y, task_types.scores(data, model, model_input(frame, data)))


@dataclass(frozen=True)
class Lineage:
    """Why and from where a training run was started: recorded on the run and on the registered version."""

    trigger: str
    dag_id: str
    run_id: str
    code_version: str
    drift_report: str = ""
    drifted_columns: tuple[str, ...] = ()
    bundle: str = ""  # the DAG bundle the run's code came from, and its version (a commit)
    bundle_version: str = ""


def train_candidate(
    target: MlflowTarget,
    storage: Storage,
    spec: PipelineSpec,
    training_set: TrainingSetRecord,
    lineage: Lineage,
    validation: dict[str, Any] | None = None,
    search: SearchRecord | None = None,
) -> CandidateRecord:
    """Fit on all but the last ``holdout_days``, score the holdout, log and register the candidate; with a
    ``search``, the best trial's params over the spec's.

    The version is keyed by :func:`training_key`: a retry, or a re-run with nothing changed, returns the
    version registered first without fitting again; a change of data, trainer, params or code trains anew.
    """
    from airflow_mlops.steps import registry
    from airflow_mlops.storage import read_parquet

    model_spec = tuned(spec.training.model, search["params"] if search else {})
    key = training_key(spec, training_set, lineage.code_version, model_spec)
    reused = registry.reuse(target, spec.registered_model_name, key)
    if reused is not None:
        return candidate_record(target, spec, training_set, reused)
    frame = read_parquet(storage, training_set["key"])
    split = time_split(frame, spec.data.timestamp_column, spec.training.holdout_days)
    trainer = model_spec.trainer
    model = fit(model_spec, spec.data, split.train)
    metrics = evaluate(model, split.holdout, spec.data)
    tags = {
        Tag.PIPELINE: spec.name,
        Tag.TRIGGER: lineage.trigger,
        Tag.AS_OF: training_set["as_of"],
        Tag.DAG_ID: lineage.dag_id,
        Tag.RUN_ID: lineage.run_id,
        Tag.CODE_VERSION: lineage.code_version,
        Tag.BUNDLE: lineage.bundle,
        Tag.BUNDLE_VERSION: lineage.bundle_version,
        Tag.SPEC_DIGEST: spec.digest or "",
        Tag.DATA_FINGERPRINT: training_set["fingerprint"],
        Tag.TRAINING_SET: storage.location(training_set["key"]),
        Tag.DRIFT_REPORT: lineage.drift_report,
        Tag.DRIFTED_COLUMNS: ",".join(lineage.drifted_columns),
        Tag.TRAINER: trainer,
        Tag.SEARCH_RUN: search["run_id"] if search else "",
    }
    candidate = registry.log_and_register(
        target,
        experiment=spec.name,
        run_name=f"{spec.name}-{training_set['as_of']}",
        model_name=spec.registered_model_name,
        model=model,
        data=spec.data,
        metrics=metrics,
        params={
            "trainer": trainer,
            **model_spec.params,
            **({"search_trial": search["trial"]} if search else {}),
            "window_days": spec.training.window_days,
            "holdout_days": spec.training.holdout_days,
            "train_rows": len(split.train),
            "holdout_rows": len(split.holdout),
            "holdout_start": split.holdout_start.date().isoformat(),
        },
        tags=tags,
        training_key=key,
        input_example=model_input(split.holdout, spec.data).head(5),
        artifacts={
            "validation/training_set.json": validation or {},
            "spec.json": spec.model_dump(mode="json"),
            TRAINED_MODEL: model_spec.model_dump(mode="json"),  # the params a search chose, with their types
        },
    )
    return candidate_record(target, spec, training_set, candidate)


def tuned(model: ModelSpec, params: dict[str, Any]) -> ModelSpec:
    """The spec's model with a search trial's ``params`` (the spec forbids searching a fixed one)."""
    return model.model_copy(update={"params": {**model.params, **params}}) if params else model


def training_key(
    spec: PipelineSpec, training_set: TrainingSetRecord, code_version: str, model: ModelSpec | None = None
) -> str:
    """What makes two trainings the same: the day, the data (its fingerprint), and a hash of everything else
    that shapes the model (trainer, ``model``'s params (the spec's, or tuned by its search), the search,
    windows, features, label, task, code version; for a trainer of your own, the version of the package it
    comes from)."""
    shape: dict[str, Any] = {
        "model": (model or spec.training.model).model_dump(mode="json"),
        "window_days": spec.training.window_days,
        "holdout_days": spec.training.holdout_days,
        "features": spec.data.feature_names,
        "label": spec.data.label_column,
        "code_version": code_version,
    }
    if spec.data.task != "binary":  # a binary pipeline's keys stay those it had before task types existed
        shape["task"] = spec.data.model_dump(mode="json", include={"task", "classes"})
    if spec.training.search is not None:  # a pipeline without one keeps the keys it had before search existed
        shape["search"] = spec.training.search.model_dump(mode="json")
    if spec.training.model.trainer not in TRAINERS:
        shape["trainer_packages"] = trainer_packages(spec.training.model.trainer)
    digest = hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:12]
    return f"{training_set['as_of']}:{training_set['fingerprint']}:{digest}"


def candidate_record(
    target: MlflowTarget, spec: PipelineSpec, training_set: TrainingSetRecord, candidate: Candidate
) -> CandidateRecord:
    return {
        **target.model_record(spec),
        "experiment_id": candidate.experiment_id,
        "run_id": candidate.run_id,
        "version": candidate.version,
        "model_uri": candidate.model_uri,
        "metrics": candidate.metrics,
        "reused": candidate.reused,
        "training_set": training_set["key"],
    }
