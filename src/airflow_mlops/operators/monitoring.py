"""The monitoring pipeline's operators: batch scoring, drift and performance, the retraining policy and the
drift-triggered training run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import BaseBranchOperator
from airflow.sdk.exceptions import AirflowSkipException

from airflow_mlops import keys
from airflow_mlops.contracts import CHALLENGER, CHAMPION, PREVIOUS, Tag
from airflow_mlops.lineage import lake_dataset, model_dataset
from airflow_mlops.links import DriftReportLink, ModelVersionLink, PerformanceReportLink
from airflow_mlops.notifications import Alert
from airflow_mlops.operators.base import DailyOperator, bad_data_fails_fast
from airflow_mlops.operators.training import record_move

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlops.contracts import DriftRecord, RetrainingRecord, ScoringRecord, ShadowRecord
    from airflow_mlops.steps.registry import Promotion


class ScoreBatchOperator(DailyOperator):
    """Score the day's validated features with ``models:/<name>@champion``; replace the day's predictions."""

    def run(self, context: Context) -> ScoringRecord:
        from airflow_mlops.steps import monitoring

        spec, day = self.spec, self.day(context)
        record = monitoring.score_day(self.mlflow, self.storage, spec, day)
        if record is None:
            raise AirflowSkipException(f"no champion for {spec.registered_model_name} yet: nothing to monitor")
        self.lineage.inputs += [
            self.in_lake(keys.offline_partition(spec, day)),
            model_dataset(self.mlflow, spec.registered_model_name, record["champion_version"]),
        ]
        self.lineage.outputs.append(lake_dataset(record["predictions"], rows=record["rows"]))
        if (challenger := record["challenger_version"]) and record["shadow_predictions"]:
            self.lineage.inputs.append(model_dataset(self.mlflow, spec.registered_model_name, challenger))
            self.lineage.outputs.append(lake_dataset(record["shadow_predictions"], rows=record["rows"]))
        return record


class DetectDriftOperator(DailyOperator):
    """Drift of the day's features against the champion's training data (its profile, built once per
    champion), with Evidently's HTML report of the same verdicts."""

    template_fields = (*DailyOperator.template_fields, "scoring")
    operator_extra_links = (DriftReportLink(),)

    def __init__(self, *, scoring: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scoring = scoring

    def run(self, context: Context) -> DriftRecord:
        from airflow_mlops.steps import drift

        day = self.day(context)
        spec, version = self.spec, self.scoring["champion_version"]
        record = drift.detect(self.mlflow, self.storage, spec, day, version)
        self.log.info("drift on %s: %s", day, record)
        self.lineage.inputs += [
            self.in_lake(keys.offline_partition(spec, day)),
            self.in_lake(keys.reference_profile(spec, version)),
        ]
        self.lineage.outputs += [lake_dataset(record["report"]), lake_dataset(record["report_json"])]
        return record


class PerformanceReportOperator(DailyOperator):
    """Champion metrics on the predictions whose labels have arrived, with Evidently's classification or
    regression report; ``None`` until there are some."""

    operator_extra_links = (PerformanceReportLink(),)

    def run(self, context: Context) -> dict[str, Any] | None:
        from airflow_mlops.steps import monitoring

        day = self.day(context)
        record = monitoring.performance_report(self.storage, self.spec, day)
        if record is None:
            self.log.info("no labelled predictions yet for %s", day)
            return None
        self.lineage.inputs += [
            self.in_lake(self.spec.monitoring.predictions_path),
            self.in_lake(self.spec.data.labels_path),
        ]
        self.lineage.outputs += [lake_dataset(record["report"]), lake_dataset(record["html_report"])]
        return record


class JudgeChallengerOperator(DailyOperator):
    """Shadow rollout (``training.rollout.mode: shadow``): the champion and ``@challenger`` on the labels
    that arrived for both, and the spec's policy on them: promote the challenger, reject it, or keep
    shadowing. ``None`` while no challenger is in shadow."""

    operator_extra_links = (ModelVersionLink(),)

    def run(self, context: Context) -> ShadowRecord | None:
        from airflow_mlops.steps import monitoring, registry

        spec, day = self.spec, self.day(context)
        name = spec.registered_model_name
        current = registry.aliases(self.mlflow, name)
        if current.get(CHALLENGER) is not None and current.get(CHALLENGER) == current.get(CHAMPION):
            # a retry after the promotion below, killed before its record or before @challenger went
            version = current[CHALLENGER]
            why = self.mlflow.client().get_model_version(name, version).tags.get(Tag.DECISION_REASON, "shadow")
            self.record_promotion(context, registry.Promotion(version, current.get(PREVIOUS), True, why))
            registry.end_shadow(self.mlflow, name, version)
        record = monitoring.shadow_report(self.mlflow, self.storage, spec, day)
        if record is None:
            self.log.info("no @challenger of %s in shadow", name)
            return None
        challenger, champion = record["challenger_version"], record["champion_version"]
        reason = "; ".join(record["reasons"])
        self.log.info("shadow of v%s beside v%s on %s: %s (%s)", challenger, champion, day, record["verdict"], reason)
        self.lineage.inputs += [
            self.in_lake(spec.monitoring.predictions_path),
            self.in_lake(keys.shadow_predictions_path(spec)),
            self.in_lake(spec.data.labels_path),
        ]
        self.lineage.outputs.append(self.in_lake(keys.report(spec, day, keys.SHADOW)))
        link = ModelVersionLink().url({**self.mlflow.model_record(spec), "version": challenger})
        if record["verdict"] == "promote":
            why = f"shadow: {reason}"
            outcome = registry.promote(self.mlflow, name, challenger, why, gated_against=champion)
            if outcome.champion == challenger:
                self.record_promotion(context, registry.Promotion(challenger, champion, True, why))
            else:  # refused: the champion moved while this task ran; tagged rejected with why
                self.log.warning("v%s not promoted: %s", challenger, outcome.reason)
            registry.end_shadow(self.mlflow, name, challenger)
        elif record["verdict"] == "reject":
            # alert first: a retry after the alias is gone finds no challenger and would never send it
            summary = f"challenger v{challenger} rejected after its shadow beside v{champion}"
            self.alert(context, Alert("challenger_rejected", spec.name, summary, reason, day.isoformat(), link))
            registry.reject(self.mlflow, name, challenger, [f"shadow: {reason}"])
            registry.end_shadow(self.mlflow, name, challenger)
        elif record["champion_failing"]:
            summary = f"champion v{champion} below its floor; challenger v{challenger} beats it in shadow"
            self.alert(context, Alert("champion_below_floor", spec.name, summary, reason, day.isoformat(), link))
        return record

    def record_promotion(self, context: Context, moved: Promotion) -> None:
        """The audit record (and alert) of a promotion out of shadow, once per promoted version."""
        from airflow_mlops.steps import audit

        event = audit.event_id("promotion", self.spec.registered_model_name, f"v{moved.champion}")
        if not self.storage.exists(keys.alias_move(self.spec, event)):
            record_move(self, context, moved, "promotion", event)


class RetrainDecisionOperator(DailyOperator, BaseBranchOperator):
    """Apply the spec's drift policy; branch to the training trigger or skip it. Emits the monitoring
    Asset event either way, with the decision in its extra."""

    template_fields = (*DailyOperator.template_fields, "drift", "performance")

    def __init__(
        self, *, drift: Any, performance: Any, training_dag_id: str, trigger_task_id: str, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.drift = drift
        self.performance = performance
        self.training_dag_id = training_dag_id
        self.trigger_task_id = trigger_task_id

    def choose_branch(self, context: Context) -> list[str]:
        from airflow_mlops.steps import monitoring

        active = context["ti"].get_dr_count(dag_id=self.training_dag_id, states=["queued", "running"])
        day = self.day(context)
        bundle = getattr(context["ti"], "bundle_instance", None)  # absent under dag.test
        record = monitoring.decide(
            self.mlflow,
            self.storage,
            self.spec,
            day,
            self.drift,
            self.performance,
            training_active=active > 0,
            bundle_version=str(getattr(bundle, "version", "") or ""),
        )
        self.log.info("retraining decision for %s: %s", day, record)
        extra: dict[str, Any] = {"ds": day.isoformat(), **record}
        for outlet in self.outlets:
            context["outlet_events"][outlet].extra = extra
        context["ti"].xcom_push(key="decision", value=record)
        self.alert_signals(context, day.isoformat(), record)
        return [self.trigger_task_id] if record["retrain"] else []

    def alert_signals(self, context: Context, day: str, record: RetrainingRecord) -> None:
        link = DriftReportLink().url(self.drift)
        action = "training triggered" if record["retrain"] else f"no training: {record['why_not']}"
        if "drift" in record["signals"]:
            summary = f"drift on {day}: {record['drift_share']:.0%} of features drifted"
            self.alert(
                context, Alert("drift", self.spec.name, summary, f"{record['signals']['drift']}; {action}", day, link)
            )
        if "performance" in record["signals"]:
            reason = f"{record['signals']['performance']}; {action}"
            self.alert(
                context,
                Alert("champion_below_floor", self.spec.name, f"champion below its floor on {day}", reason, day, link),
            )

    def execute(self, context: Context) -> Any:
        with bad_data_fails_fast():
            return BaseBranchOperator.execute(self, context)


class TriggerRetrainingOperator(TriggerDagRunOperator):
    """Airflow's own trigger, with the conf (reason, report, drifted columns, as_of) taken from the
    retraining decision at run time. One drift-triggered run per monitored day, however often it re-runs."""

    def __init__(self, *, decision_task_id: str, **kwargs: Any) -> None:
        kwargs.setdefault("trigger_run_id", "drift__{{ ds }}")
        kwargs.setdefault("skip_when_already_exists", True)
        super().__init__(**kwargs)
        self.decision_task_id = decision_task_id

    def execute(self, context: Context) -> Any:
        decision = context["ti"].xcom_pull(task_ids=self.decision_task_id, key="decision")
        self.conf = {
            "as_of": context["ds"],
            "reason": f"drift-triggered by {context['dag'].dag_id} on {context['ds']}: {decision['reason']}",
            "report": decision["report"],
            "drifted_columns": decision["drifted_columns"],
        }
        return super().execute(context)
