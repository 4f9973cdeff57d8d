"""The training pipeline's operators: point-in-time training set, train and register, the challenger gate,
infra validation, promotion."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseBranchOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_mlops import keys
from airflow_mlops.contracts import CHALLENGER
from airflow_mlops.lineage import model_dataset
from airflow_mlops.links import ChampionVersionLink, MlflowRunLink, ModelVersionLink
from airflow_mlops.notifications import Alert, move_alert
from airflow_mlops.operators.base import PipelineOperator, bad_data_fails_fast, last_complete_day

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlops.contracts import CandidateRecord, PromotionRecord, TrainingSetRecord
    from airflow_mlops.steps.registry import Promotion


class BuildTrainingSetOperator(PipelineOperator):
    """Point-in-time training set from Feast for the labels that had arrived by ``as_of`` (by default the
    last day of the run's data interval)."""

    template_fields = (*PipelineOperator.template_fields, "as_of")

    def __init__(self, *, as_of: str | None = "{{ params.as_of or '' }}", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.as_of = as_of

    def run(self, context: Context) -> TrainingSetRecord:
        from airflow_mlops.steps import features

        spec, as_of = self.spec, last_complete_day(context, self.as_of)
        record = features.build_training_set(self.feast.store(), self.storage, spec, as_of)
        self.lineage.inputs += [self.in_lake(keys.offline_prefix(spec)), self.in_lake(spec.data.labels_path)]
        self.lineage.outputs.append(self.in_lake(record["key"], rows=record["rows"]))
        return record


class TrainModelOperator(PipelineOperator):
    """Fit on all but the last ``holdout_days``, score the holdout, log everything to MLflow, register.
    The run and the version carry their lineage: why the run started, from which data and DAG run. With a
    ``search`` (``search.pick_best``'s record), the best trial's params over the spec's."""

    template_fields = (*PipelineOperator.template_fields, "training_set", "validation", "search")
    operator_extra_links = (MlflowRunLink(), ModelVersionLink())

    def __init__(self, *, training_set: Any, validation: Any = None, search: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.training_set = training_set
        self.validation = validation
        self.search = search

    def run(self, context: Context) -> CandidateRecord:
        from airflow_mlops import __version__
        from airflow_mlops.steps import training

        params, dag_run = context["params"], context["dag_run"]
        bundle = getattr(context["ti"], "bundle_instance", None)  # absent under dag.test
        provenance = training.Lineage(
            trigger=str(params.get("reason") or getattr(dag_run.run_type, "value", dag_run.run_type)),
            dag_id=dag_run.dag_id,
            run_id=dag_run.run_id,
            code_version=__version__,
            drift_report=str(params.get("report") or ""),
            drifted_columns=tuple(params.get("drifted_columns") or ()),
            bundle=str(getattr(bundle, "name", "") or ""),
            bundle_version=str(getattr(bundle, "version", "") or ""),
        )
        candidate = training.train_candidate(
            self.mlflow, self.storage, self.spec, self.training_set, provenance, self.validation, self.search
        )
        self.log.info("candidate %s: %s", candidate["model_uri"], candidate["metrics"])
        self.lineage.inputs.append(self.in_lake(self.training_set["key"]))
        self.lineage.outputs.append(model_dataset(self.mlflow, candidate["model"], candidate["version"]))
        return candidate


class ChallengerGateOperator(PipelineOperator, BaseBranchOperator):
    """Challenger vs champion on the challenger's holdout, with MLflow ``MetricThreshold`` s.

    Continues to ``promote_to`` when the challenger wins; otherwise tags it rejected and skips on.
    """

    template_fields = (*PipelineOperator.template_fields, "candidate")

    def __init__(self, *, candidate: Any, promote_to: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.candidate = candidate
        self.promote_to = promote_to

    def choose_branch(self, context: Context) -> list[str]:
        from airflow_mlops.steps import registry

        decision = registry.challenge(self.mlflow, self.storage, self.spec, self.candidate)
        self.log.info("gate for v%s: %s", self.candidate["version"], decision.summary())
        context["ti"].xcom_push(key="decision", value=decision.summary())
        if decision.promote:
            return [self.promote_to]
        registry.reject(self.mlflow, self.spec.registered_model_name, self.candidate["version"], decision.reasons)
        summary = f"challenger v{self.candidate['version']} rejected at the gate"
        link = ModelVersionLink().url(self.candidate)
        self.alert(
            context, Alert("challenger_rejected", self.spec.name, summary, "; ".join(decision.reasons), link=link)
        )
        return []

    def execute(self, context: Context) -> Any:
        with bad_data_fails_fast():
            return BaseBranchOperator.execute(self, context)


class InfraValidationOperator(PipelineOperator):
    """Load the registered version as pyfunc in a fresh process and score sample rows."""

    template_fields = (*PipelineOperator.template_fields, "candidate")

    def __init__(self, *, candidate: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.candidate = candidate

    def run(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.steps import registry

        try:
            return registry.validate_infra(self.mlflow, self.storage, self.spec, self.candidate)
        except RuntimeError as exc:  # the model does not load or score: a retry will not change that
            raise AirflowFailException(str(exc)) from exc


class PromoteModelOperator(PipelineOperator):
    """Move ``champion`` to the validated challenger; the old champion keeps ``previous``. With
    ``training.rollout.mode: shadow`` and a champion in place, the challenger becomes ``@challenger``
    instead, scored beside the champion until the monitoring DAG's ``judge_challenger`` decides."""

    template_fields = (*PipelineOperator.template_fields, "candidate", "decision")
    operator_extra_links = (ChampionVersionLink(),)

    def __init__(self, *, candidate: Any, decision: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.candidate = candidate
        self.decision = decision

    def run(self, context: Context) -> PromotionRecord:
        from airflow_mlops.steps import audit, registry

        spec, version, decision = self.spec, self.candidate["version"], self.decision
        reason = "; ".join(decision["reasons"])
        gated_against = decision["champion_version"]
        if spec.training.rollout.mode == "shadow" and gated_against is not None:
            return self.shadow(context, version, reason, gated_against)
        outcome = registry.promote(self.mlflow, spec.registered_model_name, version, reason, gated_against)
        (self.log.info if outcome.moved else self.log.warning)("v%s: %s", version, outcome.reason)
        # One record per promoted version: a retry after a kill between the alias move and the record
        # finds v<version> already champion and writes the record it missed, never a second one.
        event = audit.event_id("promotion", spec.registered_model_name, f"v{version}")
        unrecorded = outcome.champion == version and not self.storage.exists(keys.alias_move(spec, event))
        if outcome.moved or unrecorded:
            moved = outcome if outcome.moved else registry.Promotion(version, gated_against, True, reason)
            record_move(self, context, moved, "promotion", event)
        return promotion_record(self, outcome)

    def shadow(self, context: Context, version: str, reason: str, gated_against: str) -> PromotionRecord:
        from airflow_mlops.steps import audit, registry

        spec = self.spec
        # scored beside the champion from the day after the one it was trained on (the window counts the
        # days it is actually scored, so a run for an old as_of does not shorten it)
        since = last_complete_day(context, context["params"].get("as_of")) + timedelta(days=1)
        outcome = registry.start_shadow(self.mlflow, spec.registered_model_name, version, reason, gated_against, since)
        (self.log.info if outcome.moved else self.log.warning)("v%s: %s", version, outcome.reason)
        event = audit.event_id("shadow", spec.registered_model_name, f"v{version}")
        challenger = registry.aliases(self.mlflow, spec.registered_model_name).get(CHALLENGER)
        if challenger == version and not self.storage.exists(keys.alias_move(spec, event)):
            shadowed = registry.Promotion(outcome.champion, outcome.previous, True, f"v{version} shadows: {reason}")
            record_move(self, context, shadowed, "shadow", event, challenger=version)
        # @champion did not move: the record says so
        return promotion_record(self, registry.Promotion(outcome.champion, outcome.previous, False, outcome.reason))


def promotion_record(operator: PipelineOperator, outcome: Promotion) -> PromotionRecord:
    return {
        **operator.mlflow.model_record(operator.spec),
        "champion": outcome.champion,
        "previous": outcome.previous,
        "moved": outcome.moved,
        "reason": outcome.reason,
    }


def record_move(
    operator: PipelineOperator,
    context: Context,
    moved: Promotion,
    action: str,
    event: str,
    challenger: str | None = None,
) -> None:
    """Append an alias move made by this task to the audit trail, as ``event``, and alert on it."""
    from airflow_mlops.steps import audit

    spec, dag_run = operator.spec, context["dag_run"]
    actor = (getattr(dag_run, "triggering_user_name", None) if action == "rollback" else None) or dag_run.dag_id
    source = f"{dag_run.dag_id}/{dag_run.run_id}"
    entry = audit.move(spec, moved, action=action, actor=actor, source=source, event=event, challenger=challenger)
    audit.record(operator.storage, spec, entry)
    link = ChampionVersionLink().url({**operator.mlflow.model_record(spec), "champion": challenger or moved.champion})
    operator.alert(context, move_alert(entry, link))


class PlanRollbackOperator(PipelineOperator):
    """Check a rollback of ``@champion`` (to the ``to_version`` param, default ``@previous``) and fix which
    versions it moves between, so a retried rollback moves the same two."""

    def run(self, context: Context) -> dict[str, str]:
        from airflow_mlops.steps import registry

        to = context["params"].get("to_version")
        try:
            plan = registry.plan_rollback(self.mlflow, self.spec.registered_model_name, None if to is None else str(to))
        except registry.RollbackRefused as exc:
            raise AirflowFailException(str(exc)) from exc  # a request that cannot be met: no retry
        self.log.info("rollback planned: v%s -> v%s", plan.from_version, plan.to_version)
        return {"from_version": plan.from_version, "to_version": plan.to_version}


class RollbackOperator(PipelineOperator):
    """Move ``@champion`` back as planned; the version it leaves keeps ``@previous``. Recorded in the
    audit trail with who triggered it (the DAG run's user) and the ``reason`` param."""

    template_fields = (*PipelineOperator.template_fields, "plan")
    operator_extra_links = (ChampionVersionLink(),)

    def __init__(self, *, plan: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan = plan

    def run(self, context: Context) -> PromotionRecord:
        from airflow_mlops.steps import audit, registry

        plan = registry.RollbackPlan(self.plan["from_version"], self.plan["to_version"])
        reason = str(context["params"]["reason"])
        try:
            moved = registry.rollback(self.mlflow, self.spec.registered_model_name, plan, reason)
        except registry.RollbackRefused as exc:
            raise AirflowFailException(str(exc)) from exc  # a request that cannot be met: no retry
        # the run and the two versions: a retry rewrites its own record, another move never does
        dag_run = context["dag_run"]
        event = audit.event_id("rollback", dag_run.run_id, f"v{plan.from_version}", f"v{plan.to_version}")
        record_move(self, context, moved, "rollback", event)
        return promotion_record(self, moved)
