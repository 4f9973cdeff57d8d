"""MLflow: log a candidate, register it once, gate it against the champion, move the aliases.

Aliases are the deployment contract: ``champion`` is what scoring loads (``models:/<name>@champion``),
``previous`` is the rollback target. A rejected challenger stays registered with the reason as tags.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

import pandas as pd

from airflow_mlops import task_types
from airflow_mlops.contracts import (
    CHALLENGER,
    CHAMPION,
    HOLDOUT_PREFIX,
    PREVIOUS,
    PROMOTED,
    REJECTED,
    ROLLED_BACK,
    SHADOW,
    GateRecord,
    ModelRecord,
    Tag,
    holdout_metrics,
)
from airflow_mlops.spec import DataSpec, MetricThresholdSpec, SpecError
from airflow_mlops.steps import infra_check

if TYPE_CHECKING:
    from airflow_mlops.contracts import CandidateRecord
    from airflow_mlops.spec import PipelineSpec
    from airflow_mlops.storage import Storage


@dataclass(frozen=True)
class MlflowTarget:
    """Where MLflow lives; filled from the ``mlflow_default`` connection by the operators."""

    tracking_uri: str
    registry_uri: str | None = None
    artifact_location: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def client(self) -> Any:
        import mlflow
        from mlflow import MlflowClient

        if self.username:  # MLflow's client (and the infra-validation child) read credentials from here
            os.environ["MLFLOW_TRACKING_USERNAME"] = self.username
            os.environ["MLFLOW_TRACKING_PASSWORD"] = self.password or ""
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.registry_uri or self.tracking_uri)
        return MlflowClient(self.tracking_uri, self.registry_uri or self.tracking_uri)

    @property
    def ui_url(self) -> str | None:
        """The MLflow UI when tracking goes through a server (``http(s)://``); ``None`` for a local store."""
        uri = self.tracking_uri
        return uri.rstrip("/") if uri.startswith(("http://", "https://")) else None

    def model_record(self, spec: PipelineSpec) -> ModelRecord:
        return {"pipeline": spec.name, "model": spec.registered_model_name, "mlflow_ui": self.ui_url}

    def check_access(self, timeout_s: float = 5) -> None:
        """Reach the tracking store; a server is asked for its health first, so a closed port fails at once
        instead of after MLflow's own retries."""
        if self.tracking_uri.startswith(("http://", "https://")):
            import urllib.request

            try:
                with urllib.request.urlopen(f"{self.tracking_uri.rstrip('/')}/health", timeout=timeout_s):
                    pass
            except OSError as exc:
                raise ConnectionError(f"MLflow server {self.tracking_uri} does not answer: {exc}") from exc
        self.client().search_experiments(max_results=1)

    def experiment_id(self, name: str) -> str:
        client = self.client()
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return str(experiment.experiment_id)
        location = f"{self.artifact_location.rstrip('/')}/{name}" if self.artifact_location else None
        return str(client.create_experiment(name, artifact_location=location))


def fingerprint(frame: pd.DataFrame) -> str:
    """Content hash of a frame (values, column names and order), stable across processes."""
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    digest.update(json.dumps([str(c) for c in frame.columns]).encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Candidate:
    experiment_id: str
    run_id: str
    version: str
    model_uri: str
    metrics: dict[str, float]
    reused: bool = False


def model_versions(target: MlflowTarget, model_name: str, where: str = "") -> list[Any]:
    """The registered versions of ``model_name`` (matching an MLflow filter ``where``); none before the first."""
    client = target.client()
    if not client.search_registered_models(filter_string=f"name = '{model_name}'"):
        return []
    query = f"name = '{model_name}'" + (f" and {where}" if where else "")
    return list(client.search_model_versions(query))


def find_version(target: MlflowTarget, model_name: str, training_key: str) -> Any | None:
    """The version registered for this exact training key (the lowest, should a retry have made two)."""
    versions = model_versions(target, model_name, f"tag.{Tag.TRAINING_KEY} = '{training_key}'")
    return min(versions, key=lambda v: int(v.version)) if versions else None


def reuse(target: MlflowTarget, model_name: str, training_key: str) -> Candidate | None:
    """The candidate already registered for ``training_key``: a retry or re-run returns it unchanged."""
    existing = find_version(target, model_name, training_key)
    return None if existing is None else registered_candidate(target, model_name, existing)


def registered_candidate(target: MlflowTarget, model_name: str, version: Any) -> Candidate:
    run = target.client().get_run(version.run_id)
    return Candidate(
        run.info.experiment_id,
        version.run_id,
        str(version.version),
        f"models:/{model_name}/{version.version}",
        holdout_metrics(run.data.metrics),
        reused=True,
    )


def last_trained_on(target: MlflowTarget, model_name: str) -> date | None:
    """The newest ``as_of`` any version of the model was trained for (the retraining cooldown's clock)."""
    dates = [date.fromisoformat(v.tags[Tag.AS_OF]) for v in model_versions(target, model_name) if Tag.AS_OF in v.tags]
    return max(dates) if dates else None


def log_and_register(
    target: MlflowTarget,
    *,
    experiment: str,
    run_name: str,
    model_name: str,
    model: Any,
    data: DataSpec,
    metrics: dict[str, float],
    params: dict[str, Any],
    tags: dict[str, str],
    training_key: str,
    input_example: pd.DataFrame,
    artifacts: dict[str, dict[str, Any]],
) -> Candidate:
    """Log the fitted model with signature and input example and register it as a new version.

    Re-running with the same ``training_key`` returns the version registered the first time.
    """
    import mlflow
    from mlflow.models import infer_signature

    reused = reuse(target, model_name, training_key)
    if reused is not None:
        return reused
    experiment_id = target.experiment_id(experiment)
    end_killed_runs(target, experiment_id, training_key)
    tags = {**tags, Tag.TRAINING_KEY: training_key, Tag.TASK: task_types.describe(data)}
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run:
        mlflow.log_params({k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in params.items()})
        mlflow.log_metrics({f"{HOLDOUT_PREFIX}{k}": v for k, v in metrics.items()})
        for name, payload in artifacts.items():
            mlflow.log_dict(payload, name)
        signature = infer_signature(input_example, task_types.scores(data, model, input_example))
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=signature,
            input_example=input_example,
            pyfunc_predict_fn=task_types.PYFUNC_PREDICT_FN[data.task],
            # skops (MLflow's default) refuses the torch trainer and needs a per-model allow-list; only
            # holders of the registry's credentials can register a model (docs/production.md, threat model).
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
            pip_requirements=requirements(model),
        )
    winner = register(target, model_name, info.model_uri, {k: v for k, v in tags.items() if v})
    if winner.run_id != run.info.run_id:  # a racing run of the same key registered first: its model stands
        return registered_candidate(target, model_name, winner)
    version = str(winner.version)
    return Candidate(experiment_id, run.info.run_id, version, f"models:/{model_name}/{version}", metrics)


def end_killed_runs(target: MlflowTarget, experiment_id: str, training_key: str) -> None:
    """Mark ``KILLED`` the runs of this key left ``RUNNING`` by a killed attempt (nothing registered them:
    no version exists for the key), so the experiment shows one finished run per model, not ghosts."""
    client = target.client()
    where = f"tags.`{Tag.TRAINING_KEY}` = '{training_key}' and attributes.status = 'RUNNING'"
    for run in client.search_runs([experiment_id], filter_string=where):
        client.set_terminated(run.info.run_id, status="KILLED")


def register(target: MlflowTarget, model_name: str, model_uri: str, tags: dict[str, str]) -> Any:
    """Register ``model_uri`` with every lineage tag in the one call that creates the version, so a kill
    leaves either no version or a complete one; then settle duplicates of its training key (MLflow's HTTP
    retries can resend a create the server had committed, two runs can race): the lowest version wins,
    the others are deleted. Returns the winning ``ModelVersion``."""
    import mlflow
    from mlflow.exceptions import MlflowException

    target.client()  # points mlflow's fluent API at this target
    created = mlflow.register_model(model_uri, model_name, tags=tags)
    # ``or created``: a server whose search lags its writes may not list the new version yet
    winner = find_version(target, model_name, tags[Tag.TRAINING_KEY]) or created
    client = target.client()
    for duplicate in model_versions(target, model_name, f"tag.{Tag.TRAINING_KEY} = '{tags[Tag.TRAINING_KEY]}'"):
        if str(duplicate.version) != str(winner.version) and not duplicate.aliases:
            try:
                client.delete_model_version(model_name, duplicate.version)
            except MlflowException as exc:  # the racing run deleted it first
                if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
    return winner


def requirements(model: Any) -> list[str]:
    """Pinned serving requirements, from this process (MLflow's own inference costs seconds per model)."""
    from importlib.metadata import packages_distributions, version

    packages = ["mlflow", "scikit-learn", "pandas", "numpy", "cloudpickle", "scipy"]
    # the classes the model is made of (pickled by reference): itself, and every step inside it
    inner = model.get_params(deep=True).values() if hasattr(model, "get_params") else ()
    modules = {type(part).__module__ for part in (model, *inner) if part is model or hasattr(part, "get_params")}
    if any(module.endswith("torch_mlp") for module in modules):
        packages.append("torch")
    # a class of a trainer of your own, from an installed package: the model needs that package to load
    owners = packages_distributions()
    for top in sorted({module.split(".")[0] for module in modules}):
        packages += [d for d in owners.get(top, []) if d not in packages and d != "airflow-mlops"]
    return [f"{p}=={version(p)}" for p in packages]


def aliases(target: MlflowTarget, model_name: str) -> dict[str, str]:
    """The registered model's aliases (alias to version); empty only when MLflow says there is no such model.

    Anything else (an outage, a 5xx, a timeout) raises: read as "no champion", it would let a worse model
    through the gate and make scoring skip the day.
    """
    from mlflow.exceptions import MlflowException

    try:
        registered = target.client().get_registered_model(model_name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return {}
        raise
    return {alias: str(version) for alias, version in registered.aliases.items()}


def champion_version(target: MlflowTarget, model_name: str) -> Any | None:
    """The ``@champion`` version, or ``None`` when MLflow says there is none (see :func:`aliases`)."""
    version = aliases(target, model_name).get(CHAMPION)
    return None if version is None else target.client().get_model_version(model_name, version)


@dataclass
class GateDecision:
    promote: bool
    challenger: dict[str, float]
    champion: dict[str, float] | None
    champion_version: str | None
    reasons: list[str] = field(default_factory=list)

    def summary(self) -> GateRecord:
        return {
            "promote": self.promote,
            "challenger": self.challenger,
            "champion": self.champion,
            "champion_version": self.champion_version,
            "reasons": self.reasons,
        }


def gate(
    thresholds: dict[str, MetricThresholdSpec],
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    champion_version: str | None = None,
) -> GateDecision:
    """MLflow's own threshold check: absolute floors always, changes against the champion when there is one."""
    from mlflow.exceptions import MlflowException
    from mlflow.models import MetricThreshold
    from mlflow.models.evaluation import EvaluationResult
    from mlflow.models.evaluation.validation import ModelValidationFailedException

    validation = {
        metric: MetricThreshold(
            threshold=spec.threshold,
            min_absolute_change=spec.min_absolute_change if champion else None,
            min_relative_change=spec.min_relative_change if champion else None,
            greater_is_better=task_types.greater_is_better(metric),
        )
        for metric, spec in thresholds.items()
        if spec.threshold is not None or champion
    }
    decision = GateDecision(True, challenger, champion, champion_version)
    if not validation:
        decision.reasons.append("no champion yet and no absolute threshold: promoted")
        return decision
    try:
        import mlflow

        mlflow.validate_evaluation_results(
            validation,
            EvaluationResult(metrics=challenger, artifacts={}, run_id="challenger"),
            EvaluationResult(metrics=champion, artifacts={}, run_id="champion") if champion else None,
        )
    except ModelValidationFailedException as exc:
        decision.promote = False
        decision.reasons = [line.strip() for line in str(exc).splitlines() if line.strip()]
    except MlflowException as exc:
        raise ValueError(f"cannot gate challenger: {exc.message}") from exc
    else:
        versus = f"champion v{champion_version}" if champion else "absolute thresholds (no champion yet)"
        decision.reasons.append(f"passed {', '.join(validation)} against {versus}")
    return decision


def version_task(version: Any) -> str:
    """What a registered version predicts (``Tag.TASK``); versions from before task types are binary."""
    return str(version.tags.get(Tag.TASK, "binary"))


def challenge(target: MlflowTarget, storage: Storage, spec: PipelineSpec, candidate: CandidateRecord) -> GateDecision:
    """Gate a candidate against the current champion, both scored on the candidate's own holdout (the
    newest labelled days), so the comparison is like for like."""
    from airflow_mlops.steps import training
    from airflow_mlops.storage import read_parquet

    name = spec.registered_model_name
    champion = champion_version(target, name)
    champion_metrics, versus = None, None
    task = task_types.describe(spec.data)
    if champion is not None and version_task(champion) != task:
        raise SpecError(
            f"@champion v{champion.version} of {name} predicts {version_task(champion)}, the spec says {task}: "
            "models of another task cannot be compared; give it its own training.registered_model"
        )
    if champion is not None and str(champion.version) != candidate["version"]:
        frame = read_parquet(storage, candidate["training_set"])
        holdout = training.time_split(frame, spec.data.timestamp_column, spec.training.holdout_days).holdout
        model = training.load_model(f"models:/{name}/{champion.version}", "sklearn")
        champion_metrics, versus = training.evaluate(model, holdout, spec.data), str(champion.version)
    return gate(spec.training.thresholds, candidate["metrics"], champion_metrics, versus)


@dataclass(frozen=True)
class Promotion:
    champion: str | None
    previous: str | None
    moved: bool
    reason: str


def promote(target: MlflowTarget, model_name: str, version: str, reason: str, gated_against: str | None) -> Promotion:
    """Point ``champion`` at ``version`` (the replaced champion keeps ``previous``), but only if the
    champion is still the one the gate compared ``version`` against (``gated_against``, ``None`` for none).

    Otherwise (an old run cleared, a backfilled training run, another spec sharing the model moved it) the
    gate's verdict is stale: ``version`` is tagged rejected with why, and ``champion`` stays. A retry after
    a kill between the alias move and the tags completes the tags.
    """
    client = target.client()
    current = aliases(target, model_name)
    current_version, previous = current.get(CHAMPION), current.get(PREVIOUS)
    if current_version == version:
        tag_decision(target, model_name, version, PROMOTED, reason)
        return Promotion(version, previous, False, f"v{version} is already champion")
    if refused := refusal(target, model_name, version, current_version, gated_against):
        return Promotion(current_version, previous, False, refused)
    if current_version is not None:
        client.set_registered_model_alias(model_name, PREVIOUS, current_version)
    client.set_registered_model_alias(model_name, CHAMPION, version)
    tag_decision(target, model_name, version, PROMOTED, reason)
    shadowing = current.get(CHALLENGER)
    if shadowing is not None and shadowing != version:  # promoted directly past a challenger in shadow
        tag_decision(target, model_name, shadowing, REJECTED, f"v{version} was promoted while it was in shadow")
        end_shadow(target, model_name, shadowing)
    return Promotion(version, current_version, True, reason)


def refusal(
    target: MlflowTarget, model_name: str, version: str, champion: str | None, gated_against: str | None
) -> str | None:
    """Why ``version`` must not move forward (to ``@champion`` or ``@challenger``), or ``None``: it was
    rolled back (a retried or re-run promotion must not undo a rollback), or the gate compared it against
    another champion than today's (its verdict is stale; it is tagged rejected)."""
    tags = target.client().get_model_version(model_name, version).tags
    if tags.get(Tag.DECISION) == ROLLED_BACK:
        return f"not moved: v{version} was rolled back ({tags.get(Tag.DECISION_REASON)}); roll forward with --to"
    if champion != gated_against:
        why = (
            f"not moved: the gate compared v{version} against "
            f"{f'v{gated_against}' if gated_against else 'no champion'}, but the champion is now "
            f"{f'v{champion}' if champion else 'none'}; train again to gate against it"
        )
        tag_decision(target, model_name, version, REJECTED, why)
        return why
    return None


def start_shadow(
    target: MlflowTarget, model_name: str, version: str, reason: str, gated_against: str | None, since: date
) -> Promotion:
    """Make ``version`` the ``@challenger``, scored beside the champion from ``since`` on (see
    :func:`airflow_mlops.steps.monitoring.judge_shadow`); a challenger already in shadow is replaced and
    tagged rejected. The champion does not move. Safe to repeat: the tags go first, the alias last."""
    client = target.client()
    current = aliases(target, model_name)
    champion, previous, replaced = current.get(CHAMPION), current.get(PREVIOUS), current.get(CHALLENGER)
    if replaced == version:
        return Promotion(champion, previous, False, f"v{version} is already @challenger")
    if refused := refusal(target, model_name, version, champion, gated_against):
        return Promotion(champion, previous, False, refused)
    client.set_model_version_tag(model_name, version, Tag.SHADOW_SINCE, since.isoformat())
    tag_decision(target, model_name, version, SHADOW, reason)
    if replaced is not None:
        tag_decision(target, model_name, replaced, REJECTED, f"replaced in shadow by v{version}")
    client.set_registered_model_alias(model_name, CHALLENGER, version)
    return Promotion(champion, previous, True, f"v{version} shadows champion v{champion}: {reason}")


def end_shadow(target: MlflowTarget, model_name: str, version: str) -> None:
    """Take ``@challenger`` off ``version`` (once it has been promoted or rejected), if it is still there."""
    if aliases(target, model_name).get(CHALLENGER) == version:
        target.client().delete_registered_model_alias(model_name, CHALLENGER)


class RollbackRefused(ValueError):
    """A rollback that must not happen: nothing to roll back, or a target that never served."""


@dataclass(frozen=True)
class RollbackPlan:
    """Which version ``@champion`` leaves (``from_version``) and which it goes back to."""

    from_version: str
    to_version: str


def plan_rollback(target: MlflowTarget, model_name: str, to: str | None = None) -> RollbackPlan:
    """Check a rollback of ``@champion`` to ``to`` (default: ``@previous``) before anything moves.

    Only a version that has been champion may be rolled back to: it passed every gate, infra validation
    included. Anything else is refused with the reason MLflow recorded for it. Going back to a version that
    was itself rolled back must be asked for by name: a repeated default rollback would otherwise undo
    the first.
    """
    from mlflow.exceptions import MlflowException

    current = aliases(target, model_name)
    champion = current.get(CHAMPION)
    if champion is None:
        raise RollbackRefused(f"{model_name} has no @champion: nothing to roll back")
    asked = str(to) if to is not None else None
    to = asked or current.get(PREVIOUS)
    if to is None:
        raise RollbackRefused(f"{model_name} has no @previous version: name the version to roll back to")
    if to == champion:
        raise RollbackRefused(f"v{to} of {model_name} is already @champion")
    try:
        version = target.client().get_model_version(model_name, to)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise RollbackRefused(f"{model_name} has no version {to!r}") from None
        raise
    predicts = version_task(target.client().get_model_version(model_name, champion))
    if version_task(version) != predicts:
        raise RollbackRefused(
            f"v{to} of {model_name} predicts {version_task(version)}, @champion v{champion} {predicts}: a rollback "
            "never changes what the model predicts"
        )
    decision = version.tags.get(Tag.DECISION)
    if decision == ROLLED_BACK and asked is None:
        raise RollbackRefused(
            f"@previous v{to} of {model_name} was rolled back ({version.tags.get(Tag.DECISION_REASON)}): "
            f"to bring it back, name it (--to {to})"
        )
    if decision not in (PROMOTED, ROLLED_BACK):
        why = version.tags.get(Tag.DECISION_REASON) or "no decision recorded"
        raise RollbackRefused(
            f"v{to} of {model_name} was never champion ({decision or 'pending'}: {why}); "
            "only a version that passed the gates and infra validation can be rolled back to"
        )
    return RollbackPlan(champion, to)


def rollback(target: MlflowTarget, model_name: str, plan: RollbackPlan, reason: str) -> Promotion:
    """Move ``@champion`` back to ``plan.to_version``; the version it leaves becomes ``@previous`` and is
    tagged ``rolled_back`` (so no promotion brings it back by accident).

    Safe to repeat: a retry after a kill between the two alias moves completes them. If someone else
    moved ``@champion`` after the plan was made, nothing moves (:class:`RollbackRefused`).
    """
    client = target.client()
    champion = aliases(target, model_name).get(CHAMPION)
    if champion not in (plan.from_version, plan.to_version):
        raise RollbackRefused(
            f"@champion of {model_name} moved to v{champion} after the rollback from v{plan.from_version} "
            "was planned: nothing changed, check the champion and roll back again if still needed"
        )
    client.set_registered_model_alias(model_name, CHAMPION, plan.to_version)
    client.set_registered_model_alias(model_name, PREVIOUS, plan.from_version)
    tag_decision(target, model_name, plan.from_version, ROLLED_BACK, reason)
    tag_decision(target, model_name, plan.to_version, PROMOTED, f"rolled back to: {reason}")
    now = aliases(target, model_name).get(CHAMPION)
    if now != plan.to_version:  # a promotion wrote @champion between our read and our write
        raise RollbackRefused(f"@champion of {model_name} moved to v{now} during the rollback: check it")
    return Promotion(plan.to_version, plan.from_version, True, reason)


def tag_decision(target: MlflowTarget, model_name: str, version: str, decision: str, reason: str) -> None:
    client = target.client()
    client.set_model_version_tag(model_name, version, Tag.DECISION, decision)
    client.set_model_version_tag(model_name, version, Tag.DECISION_REASON, reason[:5000])


def reject(target: MlflowTarget, model_name: str, version: str, reasons: list[str]) -> None:
    tag_decision(target, model_name, version, REJECTED, "; ".join(reasons))


def validate_infra(
    target: MlflowTarget, storage: Storage, spec: PipelineSpec, candidate: CandidateRecord
) -> dict[str, Any]:
    """Infra validation of a candidate on the newest rows of its training set; a candidate that fails is
    tagged rejected, and the :class:`RuntimeError` says why."""
    from airflow_mlops.steps.training import model_input
    from airflow_mlops.storage import read_parquet

    frame = read_parquet(storage, candidate["training_set"])
    sample = model_input(frame, spec.data).tail(spec.training.infra_validation_rows)
    try:
        return infra_validate(target, candidate["model_uri"], sample, spec.data)
    except RuntimeError as exc:
        reject(target, spec.registered_model_name, candidate["version"], [str(exc)])
        raise


def infra_validate(
    target: MlflowTarget, model_uri: str, sample: pd.DataFrame, data: DataSpec, timeout_s: int = 300
) -> dict[str, Any]:
    """Load the registered model as pyfunc in a fresh interpreter and score ``sample`` there; the scores
    must suit the task (:func:`airflow_mlops.task_types.scores_problem`).

    This is what a scoring worker will do, so a model that pickles but does not load, or loads but
    cannot score the serving schema, is caught before it becomes champion (:class:`RuntimeError`). MLflow or
    the artifact store being unreachable is not the model's fault: :class:`ConnectionError`, retried.
    """
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "airflow_mlops.steps.infra_check",
            model_uri,
            target.tracking_uri,
            target.registry_uri or target.tracking_uri,
            data.model_dump_json(),
        ],
        input=sample.to_parquet(index=False),  # parquet keeps every dtype as scoring will see it (int32, bool)
        capture_output=True,
        timeout=timeout_s,
        check=False,
    )
    tail = completed.stderr.decode(errors="replace").strip().splitlines()[-5:]
    if completed.returncode == infra_check.UNAVAILABLE:
        raise ConnectionError(f"infra validation could not download {model_uri} (retry): {tail}")
    if completed.returncode != 0:
        raise RuntimeError(f"infra validation: {model_uri} failed to load or score in a fresh process: {tail}")
    result: dict[str, Any] = json.loads(completed.stdout.decode().strip().splitlines()[-1])
    if result["problem"]:
        raise RuntimeError(f"infra validation: {model_uri} scored {result['rows']} rows: {result['problem']}")
    return result
