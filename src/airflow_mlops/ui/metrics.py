"""Pipeline and model metrics for Prometheus, served at ``/mlops/metrics`` by the monitoring app.

Read at scrape time where the pipelines wrote them (reports, validation results and the offline store in
the data lake, versions and aliases in MLflow, materialisation intervals in Feast's registry), like the
monitoring page, so they tell the truth however a run was started. Times are exposed as Unix timestamps,
Prometheus' idiom: an age is ``time() - metric`` in PromQL (see ``deploy/prometheus/alerts.yml``).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from airflow_mlops import keys
from airflow_mlops.contracts import CHALLENGER, CHAMPION
from airflow_mlops.steps.monitoring import below_floor

if TYPE_CHECKING:
    from airflow_mlops.storage import Storage
    from airflow_mlops.ui.catalog import Overview

log = logging.getLogger(__name__)

NAMESPACE = "airflow_mlops"
# Per-day series (drift share by ``ds``) cover the newest days only, so a pipeline's series stay bounded.
RECENT_DAYS = 30


@dataclass
class Readings:
    """What the metrics of one pipeline are made of, besides its :class:`~airflow_mlops.ui.catalog.Overview`."""

    overview: Overview
    validations: Counter[tuple[str, str]] = field(default_factory=Counter)  # (stage, outcome) -> results
    validated_rows: Counter[tuple[str, str]] = field(default_factory=Counter)  # (stage, outcome) -> rows
    published_rows: int = 0
    live: dict[str, dict[str, float]] = field(default_factory=dict)  # version -> newest live metrics
    materialized_until: float | None = None  # Unix seconds: the end of Feast's newest materialisation


def day_timestamp(ds: str) -> float:
    return datetime.fromisoformat(ds).replace(tzinfo=UTC).timestamp()


def read(overview: Overview, storage: Storage, feature_view: Callable[[str], Any]) -> Readings:
    """Everything beyond ``overview``: every validation result, the live metrics per model version of the
    newest performance reports, and the end of the feature view's newest materialisation in Feast."""
    from airflow_mlops.steps.features import offline_days

    spec = overview.pipeline.spec
    assert spec is not None
    readings = Readings(overview)
    published = set(offline_days(storage, spec))
    for stage in ("raw", "training"):
        for key in storage.files(keys.validation_results(spec, stage), ".json"):
            result = json.loads(storage.read_bytes(key))
            outcome = "passed" if result.get("passed") else "blocked"
            readings.validations[stage, outcome] += 1
            readings.validated_rows[stage, outcome] += int(result.get("rows", 0))
            source = str(result.get("source", ""))  # the validated partition's location
            if stage == "raw" and outcome == "passed" and "date=" in source and keys.partition_day(source) in published:
                readings.published_rows += int(result.get("rows", 0))
    for key in storage.files(keys.reports_prefix(spec), "/performance.json")[-RECENT_DAYS:]:
        by_version = json.loads(storage.read_bytes(key)).get("by_version", {})
        readings.live.update({str(version): metrics for version, metrics in by_version.items()})
    for key in storage.files(keys.reports_prefix(spec), f"/{keys.SHADOW}")[-1:]:  # a challenger in shadow
        shadow = json.loads(storage.read_bytes(key))
        if shadow.get("challenger") and overview.aliases.get(CHALLENGER) == shadow["challenger_version"]:
            readings.live[shadow["challenger_version"]] = shadow["challenger"]
    from feast.errors import FeatureViewNotFoundException

    try:
        intervals = feature_view(spec.features.feature_view).materialization_intervals
    except FeatureViewNotFoundException:  # a new pipeline that has not published a day yet
        intervals = []
    if intervals:
        readings.materialized_until = max(end for _, end in intervals).timestamp()
    return readings


def floats(metrics: dict[str, Any]) -> Iterator[tuple[str, float]]:
    """The numeric metrics of a performance record (its per-version breakdown left out)."""
    for name, value in sorted(metrics.items()):
        if isinstance(value, int | float) and not isinstance(value, bool):
            yield name, float(value)


def gauge(name: str, documentation: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{NAMESPACE}_{name}", documentation, labels=labels)


def families(readings: list[Readings], failed: list[str]) -> list[Metric]:
    """The metric families of every pipeline read; ``failed`` pipelines get ``up 0`` and nothing else."""
    up = gauge("up", "1 when the pipeline's state could be read at this scrape, 0 otherwise.", ["pipeline"])
    drift = gauge("drift_share", "Share of drifted feature columns on the newest monitored day.", ["pipeline"])
    daily = gauge(
        "daily_drift_share", "Share of drifted feature columns per monitored day (newest days).", ["pipeline", "ds"]
    )
    threshold = gauge("drift_threshold", "The spec's max_drifted_share: more drift asks for training.", ["pipeline"])
    drifted = gauge("drifted_columns", "How many feature columns drifted on the newest monitored day.", ["pipeline"])
    column = gauge("column_drifted", "1 when the column drifted on the newest monitored day.", ["pipeline", "column"])
    scores = gauge(
        "prediction_drifted", "1 when the champion's scores drifted on the newest monitored day.", ["pipeline"]
    )
    retrain = gauge("retraining_requested", "1 when the newest monitored day asked for training.", ["pipeline"])
    monitored = gauge("last_monitored_day_timestamp_seconds", "The newest monitored day (00:00 UTC).", ["pipeline"])
    live = gauge(
        "live_metric",
        "A model version's metric on the labels that arrived, newest report.",
        ["pipeline", "version", "metric"],
    )
    champion_live = gauge(
        "champion_live_metric", "live_metric of the version @champion points to.", ["pipeline", "metric"]
    )
    floor = gauge(
        "live_metric_floor",
        "The spec's min_performance limit (a ceiling for lower-is-better metrics such as log_loss).",
        ["pipeline", "metric"],
    )
    failing = gauge(
        "champion_below_floor",
        "1 when the champion's live metric is past its min_performance limit (the policy's own test).",
        ["pipeline", "metric"],
    )
    champion = gauge("champion_version", "The version @champion points to.", ["pipeline"])
    challenger = gauge("challenger_version", "The version @challenger points to (in shadow).", ["pipeline"])
    versions = gauge("model_versions", "Registered model versions by promotion decision.", ["pipeline", "decision"])
    trained = gauge("last_training_timestamp_seconds", "When the newest model version was registered.", ["pipeline"])
    # Totals over the results kept in the lake, so gauges: a re-validated day replaces its result.
    validations = gauge(
        "validations", "GX validation results kept, by stage and outcome.", ["pipeline", "stage", "outcome"]
    )
    rows = gauge(
        "validated_rows",
        "Rows of the validation results kept, by stage and outcome (blocked raw rows are quarantined).",
        ["pipeline", "stage", "outcome"],
    )
    published = gauge("published_rows", "Rows of the validated raw days that are in the offline store.", ["pipeline"])
    fresh = gauge(
        "features_materialized_until_timestamp_seconds",
        "End of the feature view's newest materialisation in Feast.",
        ["pipeline", "feature_view"],
    )
    for name in failed:
        up.add_metric([name], 0)
    for reading in readings:
        view = reading.overview
        spec = view.pipeline.spec
        assert spec is not None
        name = spec.name
        up.add_metric([name], 1)
        policy = spec.monitoring.drift
        threshold.add_metric([name], policy.max_drifted_share)
        for metric, value in sorted(policy.min_performance.items()):
            floor.add_metric([name, metric], value)
        monitored_days = [d for d in view.days if d.drift_share is not None]
        for day in monitored_days[-RECENT_DAYS:]:
            daily.add_metric([name, day.ds], float(day.drift_share or 0))
        if monitored_days:
            newest = monitored_days[-1]
            drift.add_metric([name], float(newest.drift_share or 0))
            drifted.add_metric([name], len(newest.drifted_columns))
            for feature in spec.data.features:
                column.add_metric([name, feature.name], int(feature.name in newest.drifted_columns))
            if newest.prediction_drift is not None:
                scores.add_metric([name], int(newest.prediction_drift))
            retrain.add_metric([name], int(newest.retrain))
            monitored.add_metric([name], day_timestamp(newest.ds))
        for version, metrics in sorted(reading.live.items()):
            for metric, value in floats(metrics):
                live.add_metric([name, version, metric], value)
        if CHALLENGER in view.aliases:
            challenger.add_metric([name], float(view.aliases[CHALLENGER]))
        if CHAMPION in view.aliases:
            champion.add_metric([name], float(view.aliases[CHAMPION]))
            champion_metrics = reading.live.get(view.aliases[CHAMPION], {})
            for metric, value in floats(champion_metrics):
                champion_live.add_metric([name, metric], value)
            for metric, limit in sorted(policy.min_performance.items()):
                if metric in champion_metrics:
                    past = below_floor({metric: limit}, champion_metrics)
                    failing.add_metric([name, metric], int(bool(past)))
        for decision, count in sorted(Counter(v.decision for v in view.versions).items()):
            versions.add_metric([name, decision], count)
        if view.versions:
            trained.add_metric([name], max(v.registered_at for v in view.versions))
        for (stage, outcome), count in sorted(reading.validations.items()):
            validations.add_metric([name, stage, outcome], count)
            rows.add_metric([name, stage, outcome], reading.validated_rows[stage, outcome])
        published.add_metric([name], reading.published_rows)
        if reading.materialized_until is not None:
            fresh.add_metric([name, spec.features.feature_view], reading.materialized_until)
    return [up, drift, daily, threshold, drifted, column, scores, retrain, monitored, live, champion_live, floor,
            failing, champion, challenger, versions, trained, validations, rows, published, fresh]  # fmt: skip


class Snapshot(Collector):
    """The families of one scrape, for ``generate_latest``."""

    def __init__(self, found: Iterable[Metric]) -> None:
        self.found = list(found)

    def collect(self) -> Iterable[Metric]:
        return self.found


def exposition(found: Iterable[Metric], accept: str) -> tuple[bytes, str]:
    """``found`` in the format the scraper's ``Accept`` header asks for (OpenMetrics or Prometheus text),
    and its content type."""
    from prometheus_client.exposition import choose_encoder

    encoder, content_type = choose_encoder(accept)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Snapshot(found))
    return encoder(registry), content_type
