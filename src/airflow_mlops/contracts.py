"""What the steps hand each other: the XCom records of every task, and the names written into MLflow.

Records are ``TypedDict`` s, so they stay plain JSON for XCom (and for Airflow's UI) while readers and
type checkers know their fields. Tag and alias names are constants: the registry, the monitoring page
and the day-by-day history read what the training pipeline wrote under the same names.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

# Registered-model aliases: the deployment contract. Scoring loads ``models:/<name>@champion``;
# ``previous`` is the version it replaced, the rollback target.
CHAMPION = "champion"
PREVIOUS = "previous"
CHALLENGER = "challenger"  # a version scored beside the champion during its shadow window


class Tag:
    """MLflow tag names, on the run and on the registered version (each version carries its lineage)."""

    PIPELINE = "pipeline"
    TRIGGER = "trigger"
    AS_OF = "logical_date"  # the date whose labels the model was trained on
    DAG_ID = "airflow_dag_id"
    RUN_ID = "airflow_run_id"
    CODE_VERSION = "code_version"  # the airflow-mlops package version
    BUNDLE = "airflow_bundle"  # the DAG bundle that ran the training: its name
    BUNDLE_VERSION = "airflow_bundle_version"  # and its version (a commit for a GitDagBundle; empty: unversioned)
    SPEC_DIGEST = "spec_sha256"  # the spec file as the training read it
    DATA_FINGERPRINT = "data_fingerprint"
    TRAINING_SET = "training_set"  # the training set's location: the drift reference of the version
    DRIFT_REPORT = "drift_report"
    DRIFTED_COLUMNS = "drifted_columns"
    TRAINER = "trainer"
    TASK = "task"  # what the model predicts (task_types.describe); absent on versions older than task types: binary
    TRAINING_KEY = "training_key"  # as_of + data fingerprint + hash of the model's shape: one version per key
    DECISION = "decision"  # promoted | rejected | rolled_back | shadow (absent while pending)
    DECISION_REASON = "decision_reason"
    SHADOW_SINCE = "shadow_since"  # the first day a challenger was scored beside the champion
    SEARCH_KEY = "search_key"  # on a hyperparameter search's parent run: the training key of the unsearched spec
    TRIAL = "search_trial"  # on a trial's nested run (under the search's run, MLflow's parentRunId): its number
    SEARCH_RUN = "search_run"  # on a candidate tuned by a search: the search's parent run


PROMOTED, REJECTED, PENDING = "promoted", "rejected", "pending"
ROLLED_BACK = "rolled_back"  # was champion, then taken back: never promoted again by a training run
SHADOW = "shadow"  # passed the offline gate, @challenger: promoted or rejected on live labels
HOLDOUT_PREFIX = "holdout_"  # run metrics measured on the time-based holdout


def holdout_metrics(run_metrics: dict[str, float]) -> dict[str, float]:
    """A run's holdout metrics without their prefix (``holdout_roc_auc`` -> ``roc_auc``)."""
    return {k.removeprefix(HOLDOUT_PREFIX): v for k, v in run_metrics.items() if k.startswith(HOLDOUT_PREFIX)}


class ValidationRecord(TypedDict):
    """``validate_*`` (XCom key ``validation``): the GX outcome and where its full result lies."""

    suite: str
    source: str
    rows: int
    passed: bool
    evaluated: int
    blocking_failures: list[str]
    warnings: list[str]
    result: str
    result_key: str


class PublishedFeatures(TypedDict):
    """``publish_features``: the offline partition written and the window materialised online."""

    pipeline: str
    offline_partition: str
    rows: int
    feature_view: str
    start: str
    end: str


class TrainingSetRecord(TypedDict):
    """``build_training_set``: the point-in-time training set (storage key) and its fingerprint."""

    key: str
    as_of: str
    rows: int
    labels: int
    fingerprint: str
    label_mean: float | None  # the share of 1s (binary) or the mean label (regression); None for classes


class TrialRecord(TypedDict):
    """``search.plan_round_<n>`` (a list, one per mapped trial task): a trial's number, the params Optuna
    suggested, and the search's parent MLflow run."""

    number: int
    params: dict[str, Any]
    search_run: str


class TrialResult(TrialRecord):
    """``search.trials_round_<n>`` (one per mapped task): the trial's metrics on the validation days and its
    nested MLflow run."""

    run_id: str
    experiment_id: str
    mlflow_ui: str | None
    metric: str  # training.primary_metric
    value: float
    metrics: dict[str, float]


class SearchRecord(TypedDict):
    """``search.pick_best``: the best trial, whose params train the candidate; ``run_id`` is the search's
    parent run (for the MLflow run link)."""

    run_id: str
    experiment_id: str
    mlflow_ui: str | None
    trial: int
    params: dict[str, Any]
    metric: str
    value: float
    trials: int


class ModelRecord(TypedDict):
    """Where a registered model lives, for links: its pipeline, name, and the MLflow UI (``None`` for a
    local store, whose runs and versions the monitoring page shows)."""

    pipeline: str
    model: str
    mlflow_ui: str | None


class CandidateRecord(ModelRecord):
    """``train_model``: the registered candidate version, its holdout metrics and its training set key."""

    experiment_id: str
    run_id: str
    version: str
    model_uri: str
    metrics: dict[str, float]
    reused: bool
    training_set: str


class GateRecord(TypedDict):
    """``challenger_gate`` (XCom key ``decision``): MLflow's threshold verdict and why."""

    promote: bool
    challenger: dict[str, float]
    champion: dict[str, float] | None
    champion_version: str | None
    reasons: list[str]


class PromotionRecord(ModelRecord):
    """``promote_champion``: the champion now, the ``previous`` alias, whether this run moved the
    champion and why (it does not when the gate's verdict went stale)."""

    champion: str | None
    previous: str | None
    moved: bool
    reason: str


class AliasMove(TypedDict):
    """One alias move (a promotion or rollback of ``@champion``, a ``@challenger`` put in shadow), appended
    to the pipeline's audit trail: who moved it, when, why, from which version to which."""

    event_id: str
    at: str  # UTC, ISO 8601
    pipeline: str
    model: str
    action: str  # promotion | rollback | shadow
    champion: str  # the version @champion points to after the move
    previous: str | None  # the version it replaced, now @previous
    challenger: NotRequired[str | None]  # shadow: the version @challenger points to after the move
    reason: str
    actor: str  # a user (rollback) or the DAG run that moved it
    source: str  # the DAG run, or "cli"


class ScoringRecord(TypedDict):
    """``score_batch``: where the day's predictions are and which champion made them."""

    predictions: str
    rows: int
    champion_version: str
    mean_score: float
    challenger_version: str | None  # in shadow: scored beside the champion, into shadow_predictions
    shadow_predictions: str | None


class ShadowRecord(ModelRecord):
    """``judge_challenger`` (and the day's ``shadow.json``): champion and challenger on the same arrived
    labels since the shadow began, and the verdict: ``shadowing`` (wait), ``promote`` or ``reject``."""

    version: str  # the challenger, for the task's Model version link
    champion_version: str
    challenger_version: str
    since: str
    days: int  # days both models scored, since the shadow began
    labelled_rows: int
    champion: dict[str, float] | None  # live metrics; None until labels of both classes arrived
    challenger: dict[str, float] | None
    verdict: str
    reasons: list[str]
    champion_failing: bool  # past a min_performance floor while the challenger beats it (not promoted)


class DriftRecord(TypedDict):
    """``detect_drift``: the verdicts, and the Evidently report (location and key)."""

    share: float
    dataset_drift: bool
    drifted_columns: list[str]
    reference_rows: int
    current_rows: int
    prediction_drift: bool | None  # the champion's scores drifted from its scores of the reference (None: not scored)
    champion_version: str
    report: str
    report_key: str
    report_json: str


class RetrainingRecord(TypedDict):
    """``decide_retraining`` (XCom key ``decision``, and the monitoring Asset event's extra)."""

    retrain: bool
    reason: str
    signals: dict[str, str]  # what asked for training ("drift", "performance") and why; empty: nothing did
    drifted_columns: list[str]
    why_not: str | None
    drift_share: float
    prediction_drift: bool | None  # from detect_drift: the champion's scores drifted (reported, not a signal)
    report: str
    performance: dict[str, Any] | None
    code: dict[str, str]  # bundle_version (a commit for a GitDagBundle; empty: unversioned), spec_sha256
