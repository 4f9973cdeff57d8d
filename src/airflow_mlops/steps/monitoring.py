"""Monitoring: batch scoring with the champion (and a challenger in shadow beside it), performance once
labels arrive, the policy that decides whether drift or decay should start a training run, and the one
that judges a challenger in shadow.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from airflow_mlops import keys, task_types
from airflow_mlops.contracts import (
    CHALLENGER,
    CHAMPION,
    DriftRecord,
    RetrainingRecord,
    ScoringRecord,
    ShadowRecord,
)
from airflow_mlops.spec import DataSpec, DriftPolicySpec, PipelineSpec
from airflow_mlops.storage import Storage, read_parquet, read_partition

if TYPE_CHECKING:
    from airflow_mlops.steps.registry import MlflowTarget

log = logging.getLogger(__name__)


def score(model: Any, features: pd.DataFrame, spec: PipelineSpec, model_version: str) -> pd.DataFrame:
    """A model's scores for one day of features (pyfunc): entity, timestamp, the task's score columns
    (:func:`airflow_mlops.task_types.score_frame`), and which model made them."""
    from airflow_mlops.steps.training import model_input

    scores = task_types.pyfunc_scores(spec.data, model.predict(model_input(features, spec.data)))
    return pd.DataFrame(
        {
            spec.data.entity_key: features[spec.data.entity_key].to_numpy(),
            spec.data.timestamp_column: pd.to_datetime(features[spec.data.timestamp_column], utc=True),
            **task_types.score_frame(spec.data, scores),
            "model_version": str(model_version),
        }
    )


def labelled_predictions(storage: Storage, spec: PipelineSpec, ds: date) -> pd.DataFrame:
    """Predictions joined with the labels that arrived in the last ``performance_window_days`` up to ``ds``.

    Labels land after their snapshot, so predictions are read over twice the window to meet them.
    """
    window = spec.monitoring.performance_window_days
    days = [ds - timedelta(days=offset) for offset in range(2 * window)]
    predictions = [
        read_parquet(storage, keys.predictions(spec, d)) for d in days if storage.exists(keys.predictions(spec, d))
    ]
    labels = [
        read_partition(storage, keys.labels_partition(spec, d))
        for d in days[:window]
        if storage.files(keys.labels_partition(spec, d), ".parquet")
    ]
    join_on = [spec.data.entity_key, spec.data.timestamp_column]
    if not predictions or not labels:
        return pd.DataFrame(columns=[*join_on, "score", "model_version", spec.data.label_column])
    scored = pd.concat(predictions, ignore_index=True)
    truth = known_labels(pd.concat(labels, ignore_index=True), spec.data)
    truth[spec.data.timestamp_column] = pd.to_datetime(truth[spec.data.timestamp_column], utc=True)
    return scored.merge(truth[[*join_on, spec.data.label_column]], on=join_on, how="inner")


def known_labels(truth: pd.DataFrame, data: DataSpec) -> pd.DataFrame:
    """The arrived labels that can be scored against: a null is not known yet, and a class outside
    ``data.classes`` (a new one in production) no model predicts: left out, with a warning."""
    truth = truth.dropna(subset=[data.label_column])
    if data.task != "multiclass":
        return truth
    known = task_types.class_names(truth[data.label_column]).isin([str(c) for c in data.classes])
    if not known.all():
        unknown = sorted(set(task_types.class_names(truth.loc[~known, data.label_column])))
        log.warning("%d labelled row(s) of classes not in data.classes left out: %s", int((~known).sum()), unknown)
    return truth[known]


def performance(frame: pd.DataFrame, data: DataSpec) -> dict[str, Any] | None:
    """The holdout's metrics on labelled predictions, over all of them and per model version that made
    them (``by_version``: a window can span a promotion); ``None`` until both classes (two distinct
    values) have been seen."""
    overall = live_metrics(frame, data)
    if overall is None:
        return None
    by_version = {
        str(version): metrics
        for version, rows in frame.groupby("model_version", sort=True)
        if (metrics := live_metrics(rows, data)) is not None
    }
    return {**overall, "by_version": by_version}


def live_metrics(frame: pd.DataFrame, data: DataSpec) -> dict[str, float] | None:
    """The task's metrics of labelled predictions (the score columns and the label)."""
    if frame.empty:
        return None
    label = task_types.label_values(data, frame[data.label_column])
    if not task_types.scorable(label):
        return None
    metrics = task_types.metrics(data, label, task_types.stored_scores(data, frame))
    return {**metrics, "labelled_rows": float(len(frame))}


@dataclass
class RetrainDecision:
    retrain: bool
    reason: str
    drifted_columns: list[str] = field(default_factory=list)
    why_not: str | None = None
    signals: dict[str, str] = field(default_factory=dict)  # "drift", "performance": what asked for training

    def summary(self) -> dict[str, Any]:
        return {
            "retrain": self.retrain,
            "reason": self.reason,
            "signals": self.signals,
            "drifted_columns": self.drifted_columns,
            "why_not": self.why_not,
        }


def below_floor(floors: dict[str, float], metrics: dict[str, float] | None) -> list[str]:
    """The live metrics past their ``min_performance`` limit, each as ``"<metric> <value> past its limit <floor>"``."""
    return [
        f"{metric} {metrics[metric]:.3f} past its limit {floor}"
        for metric, floor in floors.items()
        if metrics is not None and metric in metrics and task_types.past(metric, metrics[metric], floor)
    ]


def decide_retraining(
    policy: DriftPolicySpec,
    drift_share: float,
    drifted_columns: list[str],
    metrics: dict[str, float] | None,
    *,
    today: date,
    last_training: date | None,
    training_active: bool,
) -> RetrainDecision:
    """Drift (share or key feature) or decay (a metric under its floor) asks for training,
    unless a training run is active or one ran within the cooldown."""
    reasons: list[str] = []
    if drift_share >= policy.max_drifted_share:
        reasons.append(f"drift: {drift_share:.0%} of features drifted (limit {policy.max_drifted_share:.0%})")
    key_drifted = [c for c in policy.key_features if c in drifted_columns]
    if key_drifted:
        reasons.append(f"drift: key features drifted {key_drifted}")
    signals = {"drift": "; ".join(reasons)} if reasons else {}
    decayed = [f"performance: {past}" for past in below_floor(policy.min_performance, metrics)]
    if decayed:
        reasons.extend(decayed)
        signals["performance"] = "; ".join(decayed)
    quiet = (
        f"drift under the limit: {drift_share:.0%} of features drifted (limit {policy.max_drifted_share:.0%}), "
        f"no key feature: {drifted_columns}"
        if drifted_columns
        else "no drift"
    )
    decision = RetrainDecision(bool(reasons), "; ".join(reasons) or quiet, drifted_columns, signals=signals)
    if not decision.retrain:
        return decision
    if training_active:
        decision.retrain, decision.why_not = False, "a training run is already queued or running"
    elif last_training is not None and (today - last_training).days < policy.cooldown_days:
        decision.retrain = False
        decision.why_not = (
            f"cooldown: last training on {last_training}, {(today - last_training).days} day(s) ago "
            f"(cooldown {policy.cooldown_days} days)"
        )
    return decision


def score_day(target: MlflowTarget, storage: Storage, spec: PipelineSpec, ds: date) -> ScoringRecord | None:
    """Score the day's validated features with the champion and replace the day's predictions;
    ``None`` while there is no champion yet."""
    from airflow_mlops.steps.registry import aliases
    from airflow_mlops.steps.training import load_model

    name = spec.registered_model_name
    current = aliases(target, name)
    champion, challenger = current.get(CHAMPION), current.get(CHALLENGER)
    if champion is None:
        return None
    frame = read_partition(storage, keys.offline_partition(spec, ds))
    scored = score(load_model(f"models:/{name}/{champion}"), frame, spec, champion)
    key = keys.predictions(spec, ds)
    storage.write_parquet(key, scored)
    shadow = None
    if spec.training.rollout.mode == "shadow" and challenger is not None and challenger != champion:
        try:  # the challenger is on trial: whatever goes wrong with it must not stop the champion's day
            beside = score(load_model(f"models:/{name}/{challenger}"), frame, spec, challenger)
            storage.write_parquet(keys.shadow_predictions(spec, ds), beside)
            shadow = keys.shadow_predictions(spec, ds)
        except Exception:
            log.exception("challenger v%s of %s not scored on %s: its shadow misses the day", challenger, name, ds)
    return {
        "predictions": storage.location(key),
        "rows": len(scored),
        "champion_version": champion,
        "mean_score": round(float(scored["score"].mean()), 4),
        "challenger_version": challenger if shadow else None,
        "shadow_predictions": storage.location(shadow) if shadow else None,
    }


def shadow_pairs(
    storage: Storage, spec: PipelineSpec, champion: str, challenger: str, since: date, ds: date
) -> tuple[pd.DataFrame, int]:
    """The ``champion`` and ``challenger`` versions' scores of the same rows since the shadow began,
    joined with the labels that have arrived (each score column twice, suffixed ``_champion`` and
    ``_challenger``, and the label), and on how many days both scored. Rows other versions scored
    (before a rollback, an earlier challenger's) are left out."""
    data = spec.data
    join_on = [data.entity_key, data.timestamp_column]
    scored = task_types.score_columns(data)
    days = [since + timedelta(days=offset) for offset in range((ds - since).days + 1)]
    pairs, labels = [], []
    for day in days:
        if storage.exists(keys.predictions(spec, day)) and storage.exists(keys.shadow_predictions(spec, day)):
            served = read_parquet(storage, keys.predictions(spec, day))
            served = served.loc[served["model_version"].astype(str) == champion, [*join_on, *scored]]
            shadowed = read_parquet(storage, keys.shadow_predictions(spec, day))
            shadowed = shadowed.loc[shadowed["model_version"].astype(str) == challenger, [*join_on, *scored]]
            pairs.append(served.merge(shadowed, on=join_on, suffixes=("_champion", "_challenger")))
        if storage.files(keys.labels_partition(spec, day), ".parquet"):
            labels.append(read_partition(storage, keys.labels_partition(spec, day))[[*join_on, data.label_column]])
    days_scored = sum(1 for pair in pairs if not pair.empty)
    if not pairs or not labels:
        both = [f"{column}_{role}" for role in ("champion", "challenger") for column in scored]
        return pd.DataFrame(columns=[*join_on, *both, data.label_column]), days_scored
    truth = known_labels(pd.concat(labels, ignore_index=True), data)
    truth[data.timestamp_column] = pd.to_datetime(truth[data.timestamp_column], utc=True)
    return pd.concat(pairs, ignore_index=True).merge(truth, on=join_on, how="inner"), days_scored


@dataclass(frozen=True)
class ShadowVerdict:
    verdict: Literal["shadowing", "promote", "reject"]
    reasons: list[str]
    champion_failing: bool = False  # the champion is past a floor and the challenger beats it (not promoted)


def judge_shadow(
    spec: PipelineSpec,
    champion: dict[str, float] | None,
    challenger: dict[str, float] | None,
    *,
    days: int,
    elapsed: int,
    labelled_rows: int,
    champion_version: str,
    challenger_version: str,
) -> ShadowVerdict:
    """The shadow policy (``training.rollout``) on the live metrics of both models on the same labels.

    Once ``shadow_days`` have passed, the challenger faces ``training.thresholds`` against the champion,
    MLflow's own ``MetricThreshold`` check as at the offline gate, on live data. Before that, a champion
    past its ``min_performance`` that the challenger beats on the primary metric is replaced at once when
    ``promote_when_champion_fails`` says so (the thresholds do not apply then). Without enough labels
    after twice the window (``days``: days both models scored), or never scored in twice the window of
    calendar days (``elapsed``), the challenger is rejected: it cannot be judged.
    """
    from airflow_mlops.steps.registry import gate

    rollout, primary = spec.training.rollout, spec.training.primary_metric
    window = f"day {days} of {rollout.shadow_days} in shadow, {labelled_rows} labelled rows"
    if days == 0 and elapsed >= 2 * rollout.shadow_days:
        why = f"v{challenger_version} not judged: never scored in {elapsed} days of shadow (see score_batch's log)"
        return ShadowVerdict("reject", [why])
    if champion is None or challenger is None or labelled_rows < rollout.min_labelled_rows:
        wanted = f"{rollout.min_labelled_rows} labelled rows with two classes or values"
        if days >= 2 * rollout.shadow_days:
            why = f"v{challenger_version} not judged: fewer than {wanted} in {days} days of shadow"
            return ShadowVerdict("reject", [why])
        return ShadowVerdict("shadowing", [f"{window}: waiting for {wanted}"])
    verdict = gate(spec.training.thresholds, challenger, champion, champion_version)
    on_live = f"on {labelled_rows} live labels over {days} days"
    if days >= rollout.shadow_days:
        return ShadowVerdict("promote" if verdict.promote else "reject", [*verdict.reasons, on_live])
    failing = below_floor(spec.monitoring.drift.min_performance, champion)
    better = task_types.better(primary, challenger[primary], champion[primary])
    if failing and better:
        why = (
            f"champion v{champion_version} is failing ({'; '.join(failing)}) and challenger v{challenger_version} "
            f"beats it on the same labels: {primary} {challenger[primary]:.3f} against {champion[primary]:.3f}"
        )
        if rollout.promote_when_champion_fails:
            return ShadowVerdict("promote", [why, on_live])
        return ShadowVerdict("shadowing", [why, window], champion_failing=True)
    return ShadowVerdict("shadowing", [window])


def shadow_report(target: MlflowTarget, storage: Storage, spec: PipelineSpec, ds: date) -> ShadowRecord | None:
    """Judge the day's ``@challenger`` (``None`` when there is none), kept as the day's ``shadow.json``."""
    from airflow_mlops.contracts import Tag
    from airflow_mlops.steps.registry import aliases

    name = spec.registered_model_name
    current = aliases(target, name)
    champion, challenger = current.get(CHAMPION), current.get(CHALLENGER)
    if challenger is None or champion is None:
        return None
    since_tag = target.client().get_model_version(name, challenger).tags.get(Tag.SHADOW_SINCE)
    since = date.fromisoformat(since_tag) if since_tag else ds
    pairs, days = shadow_pairs(storage, spec, champion, challenger, since, ds)
    scored = task_types.score_columns(spec.data)
    live = {
        role: live_metrics(
            pairs.rename(columns={f"{column}_{role}": column for column in scored})[[spec.data.label_column, *scored]],
            spec.data,
        )
        for role in ("champion", "challenger")
    }
    verdict = judge_shadow(
        spec,
        live["champion"],
        live["challenger"],
        days=days,
        elapsed=(ds - since).days + 1,
        labelled_rows=len(pairs),
        champion_version=champion,
        challenger_version=challenger,
    )
    record: ShadowRecord = {
        **target.model_record(spec),
        "version": challenger,
        "champion_version": champion,
        "challenger_version": challenger,
        "since": since.isoformat(),
        "days": days,
        "labelled_rows": len(pairs),
        "champion": live["champion"],
        "challenger": live["challenger"],
        "verdict": verdict.verdict,
        "reasons": verdict.reasons,
        "champion_failing": verdict.champion_failing,
    }
    storage.write_bytes(keys.report(spec, ds, keys.SHADOW), json.dumps(record, indent=2).encode())
    return record


def performance_report(storage: Storage, spec: PipelineSpec, ds: date) -> dict[str, Any] | None:
    """Champion metrics on the predictions whose labels have arrived, kept as the day's report (JSON), with
    Evidently's classification or regression report of the same rows (HTML); ``None`` until there are
    labels of both classes (two distinct values)."""
    labelled = labelled_predictions(storage, spec, ds)
    metrics = performance(labelled, spec.data)
    if metrics is None:
        return None
    html = keys.report(spec, ds, keys.PERFORMANCE_REPORT)
    storage.write_bytes(html, performance_html(labelled, spec.data).encode())
    key = keys.report(spec, ds, "performance.json")
    storage.write_bytes(key, json.dumps(metrics, indent=2).encode())
    return {**metrics, "report": storage.location(key), "html_report": storage.location(html), "report_key": html}


def performance_html(labelled: pd.DataFrame, data: DataSpec) -> str:
    """Evidently's report of the labelled predictions; for multiclass, only once the labels hold every class
    (Evidently's per-class metrics need each one), a page saying so until then."""
    if data.task == "multiclass":
        present = set(task_types.class_names(labelled[data.label_column]))
        missing = [str(c) for c in data.classes if str(c) not in present]
        if missing:
            import html

            return (
                "<!doctype html><meta charset='utf-8'><title>Performance</title><p>No Evidently report yet: the "
                f"labels that have arrived hold no row of class(es) {html.escape(', '.join(missing))}, and its "
                "multiclass report needs every class. The metrics of the rows that have arrived are in "
                "performance.json beside this page.</p>"
            )
    return str(evidently_performance(labelled, data).get_html_str(as_iframe=False))


def evidently_performance(labelled: pd.DataFrame, data: DataSpec) -> Any:
    """Evidently's ``ClassificationPreset`` (binary: ``score``, the positive class's probability;
    multiclass: the class probabilities ``score_<class>`` and the predicted class) or ``RegressionPreset``
    (``score``: the predicted value) on labelled predictions."""
    from evidently import BinaryClassification, DataDefinition, Dataset, MulticlassClassification, Regression, Report
    from evidently.presets import ClassificationPreset, RegressionPreset

    label, scored = data.label_column, task_types.score_columns(data)
    if data.task == "multiclass":  # Evidently matches probability columns to the labels by name
        names = [str(c) for c in data.classes]
        frame = pd.DataFrame(labelled[scored].to_numpy(dtype=float), columns=names)
        frame[label] = [names[i] for i in task_types.label_values(data, labelled[label])]
        frame["prediction"] = labelled["prediction"].astype(str).to_numpy()
        kind: Any = MulticlassClassification(target=label, prediction_labels="prediction", prediction_probas=names)
        definition = DataDefinition(classification=[kind])
    else:
        frame = pd.DataFrame({label: task_types.label_values(data, labelled[label])})
        frame["score"] = labelled["score"].astype(float).to_numpy()
        if data.task == "regression":
            definition = DataDefinition(regression=[Regression(target=label, prediction="score")])
        else:
            kind = BinaryClassification(target=label, prediction_probas="score", pos_label=1)
            definition = DataDefinition(classification=[kind])
    preset = RegressionPreset() if data.task == "regression" else ClassificationPreset()
    return Report([preset]).run(current_data=Dataset.from_pandas(frame, data_definition=definition))


def last_requested(storage: Storage, spec: PipelineSpec, ds: date) -> date | None:
    """The newest day before ``ds``, within the cooldown, whose decision asked for training: the cooldown
    counts requests too, so a training run that fails before registering does not re-trigger every day."""
    for back in range(1, spec.monitoring.drift.cooldown_days + 1):
        day = ds - timedelta(days=back)
        key = keys.report(spec, day, "decision.json")
        if storage.exists(key) and json.loads(storage.read_bytes(key)).get("retrain"):
            return day
    return None


def decide(
    target: MlflowTarget,
    storage: Storage,
    spec: PipelineSpec,
    ds: date,
    drift: DriftRecord,
    performance: dict[str, Any] | None,
    *,
    training_active: bool,
    bundle_version: str = "",
) -> RetrainingRecord:
    """The spec's retraining policy for the day, kept as the day's decision report with the code that
    decided it (the DAG bundle's version, the spec's digest)."""
    from airflow_mlops.steps.registry import last_trained_on

    trained, asked = last_trained_on(target, spec.registered_model_name), last_requested(storage, spec, ds)
    decision = decide_retraining(
        spec.monitoring.drift,
        drift["share"],
        drift["drifted_columns"],
        performance or None,
        today=ds,
        last_training=max((d for d in (trained, asked) if d is not None), default=None),
        training_active=training_active,
    )
    if decision.retrain and not spec.monitoring.retrain_on_drift:
        decision.retrain, decision.why_not = False, "retrain_on_drift is off in the spec"
    record: RetrainingRecord = {
        **decision.summary(),  # type: ignore[typeddict-item]
        "drift_share": drift["share"],
        "prediction_drift": drift.get("prediction_drift"),
        "report": drift["report"],
        "performance": performance,
        "code": {"bundle_version": bundle_version, "spec_sha256": spec.digest or ""},
    }
    storage.write_bytes(keys.report(spec, ds, "decision.json"), json.dumps(record, indent=2).encode())
    return record
