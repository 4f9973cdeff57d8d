"""Hyperparameter search with Optuna's ask-and-tell interface, one Airflow task per trial.

No study is kept between tasks: each round rebuilds it from the results so far (the trials' params and
validation scores, passed as XComs) and asks for the next round's params with a sampler seeded by the
spec's seed and the round, so a retried round suggests the same trials. The search is an MLflow run and each
trial a run nested under it (MLflow's ``parentRunId``); a retried trial returns its finished run's result
instead of fitting again. Trials fit on the training part less its last ``validation_days`` and are scored on
those days: the gate's holdout stays unseen until the winner is trained and gated.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import TYPE_CHECKING, Any

from airflow_mlops import task_types
from airflow_mlops.contracts import SearchRecord, Tag, TrainingSetRecord, TrialRecord, TrialResult
from airflow_mlops.spec import SearchSpec, SpecError
from airflow_mlops.steps import training

if TYPE_CHECKING:
    from airflow_mlops.spec import PipelineSpec
    from airflow_mlops.steps.registry import MlflowTarget
    from airflow_mlops.storage import Storage

PARENT_RUN = "mlflow.parentRunId"  # MLflow's own tag: the UI nests a run under this one
VALIDATION_PREFIX = "validation_"  # trial metrics measured on the validation days


def settings(spec: PipelineSpec) -> SearchSpec:
    if spec.training.search is None:
        raise SpecError(f"{spec.source}: training.search is not set: this pipeline has no search to run")
    return spec.training.search


def distributions(search: SearchSpec) -> dict[str, Any]:
    """The search space as Optuna distributions."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    space: dict[str, Any] = {}
    for name, param in search.space.items():
        if param.type == "categorical":
            space[name] = CategoricalDistribution(param.choices)
        elif param.type == "int":
            step = int(param.step or 1)
            space[name] = IntDistribution(int(param.low or 0), int(param.high or 0), log=param.log, step=step)
        else:
            space[name] = FloatDistribution(param.low or 0.0, param.high or 0.0, log=param.log, step=param.step)
    return space


def suggest(spec: PipelineSpec, done: list[TrialResult], round_number: int) -> list[dict[str, Any]]:
    """The params of round ``round_number``'s trials, told the results of the rounds before it."""
    import optuna

    search = settings(spec)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # one seed per round, the same on every retry of it
    seed = int(hashlib.sha256(f"{search.seed}:{round_number}".encode()).hexdigest()[:8], 16)
    sampler: Any = (
        optuna.samplers.TPESampler(seed=seed, n_startup_trials=search.parallel)
        if search.sampler == "tpe"
        else optuna.samplers.RandomSampler(seed=seed)
    )
    metric = spec.training.primary_metric
    study = optuna.create_study(
        direction="maximize" if task_types.greater_is_better(metric) else "minimize", sampler=sampler
    )
    space = distributions(search)
    for result in sorted(done, key=lambda r: r["number"]):
        study.add_trial(optuna.trial.create_trial(params=result["params"], distributions=space, value=result["value"]))
    count = min(search.parallel, search.trials - len(done))
    return [study.ask(space).params for _ in range(count)]


def plan_round(
    target: MlflowTarget,
    storage: Storage,
    spec: PipelineSpec,
    training_set: TrainingSetRecord,
    code_version: str,
    done: list[TrialResult],
    round_number: int,
) -> list[TrialRecord]:
    """Round ``round_number``'s trials, numbered on from ``done``, under the search's parent run (started by
    the first round, found again by the others and by retries). The first round checks, before any trial
    runs, that the space's names are params the trainer takes and that the training set splits."""
    params = suggest(spec, done, round_number)
    if round_number == 1 and params:
        check_space(spec, params[0])
        validation_split(storage, spec, training_set)
    parent = start_search(target, spec, training_set, code_version)
    return [{"number": len(done) + index, "params": p, "search_run": parent} for index, p in enumerate(params)]


def check_space(spec: PipelineSpec, params: dict[str, Any]) -> None:
    """Build (not fit) the trainer's model with one trial's params, one at a time: a name it does not take
    fails here, named."""
    refused: dict[str, TypeError] = {}
    for name, value in params.items():
        try:
            training.build_model(training.tuned(spec.training.model, {name: value}), spec.data)
        except TypeError as exc:
            refused[name] = exc
    if refused:
        names, trainer = ", ".join(sorted(refused)), spec.training.model.trainer
        raise SpecError(
            f"training.search.space {names}: not a parameter of training.model.trainer {trainer!r} "
            f"({next(iter(refused.values()))})"
        )


def validation_split(storage: Storage, spec: PipelineSpec, training_set: TrainingSetRecord) -> training.Split:
    """The rows before the holdout, split again: the trials train on the first part and are scored on the
    last ``validation_days``."""
    from airflow_mlops.storage import read_parquet

    column, search = spec.data.timestamp_column, settings(spec)
    frame = read_parquet(storage, training_set["key"])
    before_holdout = training.time_split(frame, column, spec.training.holdout_days).train
    return training.time_split(before_holdout, column, search.validation_days, training.HELD_OUT["validation days"])


def start_search(target: MlflowTarget, spec: PipelineSpec, training_set: TrainingSetRecord, code_version: str) -> str:
    """The search's parent run: the one tagged with this search's key, or a new one, created with its tags
    in one call so a kill leaves no untagged run."""
    search = settings(spec)
    key = training.training_key(spec, training_set, code_version)
    client = target.client()
    experiment_id = target.experiment_id(spec.name)
    found = client.search_runs(
        [experiment_id], f"tags.`{Tag.SEARCH_KEY}` = '{key}'", max_results=1, order_by=["attributes.start_time ASC"]
    )
    if found:
        return str(found[0].info.run_id)
    tags = {Tag.PIPELINE: spec.name, Tag.SEARCH_KEY: key, Tag.AS_OF: training_set["as_of"]}
    run = client.create_run(experiment_id, run_name=f"{spec.name}-{training_set['as_of']}-search", tags=tags)
    settings_params = {
        "trainer": spec.training.model.trainer,
        **spec.training.model.params,
        **search.model_dump(mode="json", exclude={"space", "queue"}),
        "space": search.model_dump(mode="json", exclude_defaults=True)["space"],
    }
    log(client, run.info.run_id, params=settings_params)
    return str(run.info.run_id)


def run_trial(
    target: MlflowTarget, storage: Storage, spec: PipelineSpec, training_set: TrainingSetRecord, trial: TrialRecord
) -> TrialResult:
    """Fit one trial's model on the training part less its validation days, score it on them, and record
    both in a run nested under the search's run. A trial already finished (a retry) is not run again; one a
    killed attempt left running is marked ``KILLED``."""
    data = spec.data
    client = target.client()
    parent = client.get_run(trial["search_run"])
    experiment_id = str(parent.info.experiment_id)
    where = f"tags.`{PARENT_RUN}` = '{trial['search_run']}' and tags.`{Tag.TRIAL}` = '{trial['number']}'"
    for run in client.search_runs([experiment_id], where):
        if run.info.status == "FINISHED":
            return finished(target, spec, trial, run.info.run_id, experiment_id, run.data.metrics)
        if run.info.status == "RUNNING":
            client.set_terminated(run.info.run_id, status="KILLED")

    split = validation_split(storage, spec, training_set)
    model = training.tuned(spec.training.model, trial["params"])
    tags = {PARENT_RUN: trial["search_run"], Tag.TRIAL: str(trial["number"]), Tag.PIPELINE: spec.name}
    run_id = str(client.create_run(experiment_id, run_name=f"trial-{trial['number']}", tags=tags).info.run_id)
    try:
        log(
            client,
            run_id,
            params={
                **model.params,
                "train_rows": len(split.train),
                "validation_rows": len(split.holdout),
                "validation_start": split.holdout_start.date().isoformat(),
            },
        )
        try:
            fitted = training.fit(model, data, split.train, before="validation days")
        except SpecError as exc:  # the estimator refused a value the space allows
            raise SpecError(
                f"training.search trial {trial['number']}: {model.trainer} refused {trial['params']} from "
                f"training.search.space: {exc.__cause__ or exc}"
            ) from exc
        metrics = training.evaluate(fitted, split.holdout, data, part="validation days")
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    logged = {f"{VALIDATION_PREFIX}{k}": v for k, v in metrics.items()}
    log(client, run_id, metrics=logged)
    client.set_terminated(run_id, status="FINISHED")
    return finished(target, spec, trial, run_id, experiment_id, logged)


def finished(
    target: MlflowTarget,
    spec: PipelineSpec,
    trial: TrialRecord,
    run_id: str,
    experiment_id: str,
    run_metrics: dict[str, float],
) -> TrialResult:
    """A finished trial's result: its run and the metrics that run logged."""
    metrics = {k.removeprefix(VALIDATION_PREFIX): v for k, v in run_metrics.items() if k.startswith(VALIDATION_PREFIX)}
    metric = spec.training.primary_metric
    return {
        **trial,
        "run_id": str(run_id),
        "experiment_id": experiment_id,
        "mlflow_ui": target.ui_url,
        "metric": metric,
        "value": metrics[metric],
        "metrics": metrics,
    }


def best(spec: PipelineSpec, results: list[TrialResult]) -> TrialResult:
    """The trial with the best primary metric on the validation days (the lower number on a tie)."""
    if not results:
        raise SpecError("training.search ran no trial")
    sign = 1 if task_types.greater_is_better(spec.training.primary_metric) else -1
    return min(results, key=lambda r: (-sign * r["value"], r["number"]))


def pick_best(target: MlflowTarget, spec: PipelineSpec, results: list[TrialResult]) -> SearchRecord:
    """The best trial, recorded on the search's run (``best_<param>`` params, ``best_validation_<metric>``),
    which is then finished."""
    winner = best(spec, results)
    client = target.client()
    metric, parent = winner["metric"], winner["search_run"]
    log(
        client,
        parent,
        params={f"best_{k}": v for k, v in winner["params"].items()} | {"best_trial": winner["number"]},
        metrics={f"best_{VALIDATION_PREFIX}{metric}": winner["value"]},
    )
    client.set_terminated(parent, status="FINISHED")
    return {
        "run_id": parent,
        "experiment_id": winner["experiment_id"],
        "mlflow_ui": target.ui_url,
        "trial": winner["number"],
        "params": winner["params"],
        "metric": metric,
        "value": winner["value"],
        "trials": len(results),
    }


def log(
    client: Any, run_id: str, params: dict[str, Any] | None = None, metrics: dict[str, float] | None = None
) -> None:
    """Params (JSON for what is not a plain value) and metrics in one request; MLflow refuses a param logged
    again with another value, and a retry logs the same ones."""
    from mlflow.entities import Metric, Param

    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()],
        params=[
            Param(k, json.dumps(v) if isinstance(v, dict | list) or v is None else str(v))
            for k, v in (params or {}).items()
        ],
    )
