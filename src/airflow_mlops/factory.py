"""DAG factories: one validated spec in, the three level-1 pipelines out.

* ``<name>_features``: land -> GX gate -> offline store + Feast materialisation (Asset event).
* ``<name>_training``: point-in-time training set -> GX gate -> (``training.search``: trials as mapped
  tasks, round by round) -> train/evaluate/register -> challenger gate -> infra validation -> ``champion``.
* ``<name>_monitoring``: wait for the day's features -> batch score -> drift and performance
  reports -> retraining policy -> drift-triggered training run (Asset event either way).
* ``<name>_rollback``: triggered by hand (a form in the UI): ``champion`` back to ``previous`` or a named
  version, recorded in the audit trail with who and why.

With ``alerts`` in the spec, every task's failure (after its retries) is sent to the alert channels.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Asset, BaseOperator, CronDataIntervalTimetable, Param, TaskGroup, XComArg
from airflow.sdk.bases.timetable import BaseTimetable

from airflow_mlops.notifications import PipelineNotifier
from airflow_mlops.operators.features import PublishFeaturesOperator
from airflow_mlops.operators.monitoring import (
    DetectDriftOperator,
    JudgeChallengerOperator,
    PerformanceReportOperator,
    RetrainDecisionOperator,
    ScoreBatchOperator,
    TriggerRetrainingOperator,
)
from airflow_mlops.operators.search import PickBestOperator, PlanTrialsOperator, RunTrialOperator
from airflow_mlops.operators.training import (
    BuildTrainingSetOperator,
    ChallengerGateOperator,
    InfraValidationOperator,
    PlanRollbackOperator,
    PromoteModelOperator,
    RollbackOperator,
    TrainModelOperator,
)
from airflow_mlops.operators.validation import ValidateDataOperator
from airflow_mlops.sensors.partition import PartitionSensor
from airflow_mlops.spec import PipelineSpec, SearchSpec, load_spec, load_specs

# Outages (MLflow restarting, S3 throttling, Redis failing over) are retried for about 7 minutes: 30 s, 1, 2
# and 4 min. Bad data never is (it fails for good). No task may hang a worker slot for more than an hour.
DEFAULT_ARGS = {
    "retries": 4,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=10),
    "execution_timeout": timedelta(hours=1),
    "owner": "mlops",
}


# "x-" schemes are Airflow's convention for custom URIs: no provider normaliser is looked up, which
# would otherwise load every provider's asset handlers at parse time (~200 ms per DAG file).
def features_asset(spec: PipelineSpec) -> Asset:
    return Asset(
        name=f"{spec.name}.{spec.features.feature_view}", uri=f"x-feast://{spec.name}/{spec.features.feature_view}"
    )


def monitoring_asset(spec: PipelineSpec) -> Asset:
    return Asset(name=f"{spec.name}.monitoring", uri=f"x-mlops://{spec.name}/monitoring")


def timetable(schedule: str | None) -> BaseTimetable | str | None:
    """Cron schedules as data intervals, stated explicitly (Airflow 3's default for a cron string fires at
    D 00:00 with ``ds = D``, a day that has not happened yet). The run that fires at D+1 00:00 covers
    [D, D+1): its logical date is the complete day D, the same day a backfill of D processes."""
    if schedule is None or schedule == "@once":
        return schedule
    return CronDataIntervalTimetable(schedule, timezone="UTC")


def _dag(spec: PipelineSpec, kind: str, schedule: str | None, doc: str, **kwargs: Any) -> DAG:
    default_args: dict[str, Any] = {**DEFAULT_ARGS, "owner": spec.owner}
    if spec.alerts:
        default_args["on_failure_callback"] = PipelineNotifier(spec_path=str(spec.source))
    return DAG(
        dag_id=spec.dag_id(kind),  # type: ignore[arg-type]
        schedule=timetable(schedule),
        start_date=datetime.combine(spec.start_date, datetime.min.time(), UTC),
        catchup=False,
        default_args=default_args,
        tags=["mlops", spec.name, kind, *spec.tags],
        doc_md=f"**{spec.name} / {kind}**: {doc}\n\n{spec.description}\n\nSpec: `{spec.source}`",
        **kwargs,
    )


def feature_dag(spec: PipelineSpec) -> DAG:
    common = {"spec_path": str(spec.source)}
    with _dag(
        spec,
        "features",
        spec.features.schedule,
        "validate the day's raw partition and publish features",
        max_active_runs=4,
    ) as dag:
        land = PartitionSensor(task_id="wait_for_partition", dataset="raw", **common)
        gate = ValidateDataOperator(task_id="validate_raw", stage="raw", **common)
        publish = PublishFeaturesOperator(task_id="publish_features", outlets=[features_asset(spec)], **common)
        land >> gate >> publish
    return dag


def training_dag(spec: PipelineSpec) -> DAG:
    common = {"spec_path": str(spec.source)}
    params = {
        "as_of": Param(None, type=["null", "string"], format="date", description="train on labels known by this date"),
        "reason": Param(None, type=["null", "string"], description="why this run was started"),
        "report": Param(None, type=["null", "string"], description="drift report behind a drift-triggered run"),
        "drifted_columns": Param([], type="array", description="columns that drifted"),
    }
    with _dag(
        spec,
        "training",
        spec.training.schedule,
        "continuous training with data and model gates",
        params=params,
        max_active_runs=1,
    ) as dag:
        build = BuildTrainingSetOperator(task_id="build_training_set", **common)
        gate = ValidateDataOperator(
            task_id="validate_training_set",
            stage="training",
            training_set=build.output,
            **common,
        )
        # Only training moves to training.queue: infra validation stays on the default (CPU) workers so
        # that it proves the model loads and scores where batch scoring runs.
        training_queue = {"queue": spec.training.queue} if spec.training.queue else {}
        search = spec.training.search
        best = search_group(spec, search, build.output, after=gate) if search else None
        train = TrainModelOperator(
            task_id="train_model",
            training_set=build.output,
            validation=gate.output,
            search=best,
            execution_timeout=timedelta(minutes=spec.training.timeout_minutes),
            **training_queue,
            **common,
        )
        challenger = ChallengerGateOperator(
            task_id="challenger_gate", candidate=train.output, promote_to="infra_validation", **common
        )
        infra = InfraValidationOperator(task_id="infra_validation", candidate=train.output, **common)
        promote = PromoteModelOperator(
            task_id="promote_champion", candidate=train.output, decision=XComArg(challenger, key="decision"), **common
        )
        build >> gate >> train >> challenger >> infra >> promote
    return dag


def search_group(spec: PipelineSpec, search: SearchSpec, training_set: XComArg, after: BaseOperator) -> XComArg:
    """``training.search`` as a task group after ``after``: per round, a task asks Optuna for the round's trials
    and one mapped task per trial runs it (on ``training.search.queue``, else ``training.queue``); the next round
    is asked with their results, and ``pick_best`` takes the best of all, whose output it returns."""
    common = {"spec_path": str(spec.source)}
    queue = {"queue": spec.training.trials_queue} if spec.training.trials_queue else {}
    with TaskGroup("search", tooltip=f"{search.trials} trials, {search.parallel} at a time") as group:
        results: list[XComArg] = []
        for number in range(1, search.rounds + 1):
            plan = PlanTrialsOperator(
                task_id=f"plan_round_{number}",
                training_set=training_set,
                round_number=number,
                results=list(results),
                **common,
            )
            trials = RunTrialOperator.partial(
                task_id=f"trials_round_{number}",
                training_set=training_set,
                execution_timeout=timedelta(minutes=spec.training.timeout_minutes),
                **queue,
                **common,
            ).expand(trial=plan.output)
            results.append(trials.output)
        best = PickBestOperator(task_id="pick_best", results=results, **common)
    after >> group
    return best.output


def monitoring_dag(spec: PipelineSpec) -> DAG:
    common = {"spec_path": str(spec.source)}
    with _dag(
        spec,
        "monitoring",
        spec.monitoring.schedule,
        "score, watch drift and performance, ask for retraining",
        max_active_runs=1,
    ) as dag:
        # Days are decided in order, whatever the concurrency (a backfill runs up to 10 at once): a day
        # starts once the day before is settled, its retraining decision made and the training run it
        # triggered finished, so each day counts the day before in its cooldown and is scored by the
        # champion that training left.
        settled = EmptyOperator(task_id="previous_day_settled", wait_for_downstream=True)
        wait = PartitionSensor(task_id="wait_for_features", dataset="features", **common)
        score = ScoreBatchOperator(task_id="score_batch", **common)
        drift = DetectDriftOperator(task_id="detect_drift", scoring=score.output, **common)
        performance = PerformanceReportOperator(task_id="performance_report", **common)
        decide = RetrainDecisionOperator(
            task_id="decide_retraining",
            drift=drift.output,
            performance=performance.output,
            training_dag_id=spec.dag_id("training"),
            trigger_task_id="trigger_training",
            outlets=[monitoring_asset(spec)],
            **common,
        )
        trigger = TriggerRetrainingOperator(
            task_id="trigger_training",
            trigger_dag_id=spec.dag_id("training"),
            decision_task_id="decide_retraining",
            wait_for_completion=spec.monitoring.wait_for_training,
            deferrable=True,
            poke_interval=10,
        )
        settled >> wait >> score >> [drift, performance] >> decide >> trigger
        if spec.training.rollout.mode == "shadow":
            # beside the day's decision, not before it: a challenger on trial never holds up the champion's day
            performance >> JudgeChallengerOperator(task_id="judge_challenger", **common)
        settled >> trigger  # what the next day's previous_day_settled waits for, with wait_for_downstream
    return dag


def rollback_dag(spec: PipelineSpec) -> DAG:
    common = {"spec_path": str(spec.source)}
    params = {
        "reason": Param(type="string", minLength=3, description="why: kept in the audit trail and the alert"),
        "to_version": Param(
            None, type=["null", "integer"], minimum=1, description="the version to go back to (empty: @previous)"
        ),
    }
    with _dag(
        spec,
        "rollback",
        None,
        "move `@champion` back to `@previous` (or `to_version`), with a reason; a refused rollback moves nothing",
        params=params,
        max_active_runs=1,
    ) as dag:
        plan = PlanRollbackOperator(task_id="plan_rollback", **common)
        RollbackOperator(task_id="rollback_champion", plan=plan.output, **common)
    return dag


def build_pipelines(spec_path: str | Path) -> dict[str, DAG]:
    """The DAGs of one spec, or of every spec in a folder (checked not to write to each other's places),
    keyed by dag_id (for ``globals().update(...)`` in a DAG file)."""
    specs = load_specs(spec_path) if Path(spec_path).is_dir() else [load_spec(spec_path)]
    dags = [build(spec) for spec in specs for build in (feature_dag, training_dag, monitoring_dag, rollback_dag)]
    return {dag.dag_id: dag for dag in dags}
