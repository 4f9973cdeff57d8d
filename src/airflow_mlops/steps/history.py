"""What happened to a pipeline, day by day: drift share, the retraining decision, the model versions
trained and whether they were promoted. Read back from the reports in storage and the MLflow registry,
so it tells the truth about runs however they were started.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from airflow_mlops import keys
from airflow_mlops.contracts import PENDING, PROMOTED, Tag, holdout_metrics
from airflow_mlops.spec import PipelineSpec
from airflow_mlops.steps.registry import MlflowTarget, model_versions
from airflow_mlops.storage import Storage


@dataclass(frozen=True)
class Version:
    version: str
    run_id: str
    as_of: str
    trigger: str
    decision: str
    reason: str
    metrics: dict[str, float]  # holdout metrics
    registered_at: float = 0.0  # Unix seconds: when training registered it
    bundle_version: str = ""  # the code that trained it: the DAG bundle's version (a commit), the spec's digest
    spec_digest: str = ""


@dataclass(frozen=True)
class Day:
    ds: str
    drift_share: float | None
    drifted_columns: list[str]
    prediction_drift: bool | None  # None: not measured (no predictions, or a day decided before it existed)
    retrain: bool
    decision: str
    performance: float | None
    trained: list[Version]
    champion: str | None


def versions(target: MlflowTarget, spec: PipelineSpec) -> list[Version]:
    client = target.client()
    found = []
    for mv in model_versions(target, spec.registered_model_name):
        found.append(
            Version(
                version=str(mv.version),
                run_id=mv.run_id,
                as_of=mv.tags.get(Tag.AS_OF, ""),
                trigger=mv.tags.get(Tag.TRIGGER, ""),
                decision=mv.tags.get(Tag.DECISION, PENDING),
                reason=mv.tags.get(Tag.DECISION_REASON, ""),
                metrics=holdout_metrics(client.get_run(mv.run_id).data.metrics),
                registered_at=mv.creation_timestamp / 1000,
                bundle_version=mv.tags.get(Tag.BUNDLE_VERSION, ""),
                spec_digest=mv.tags.get(Tag.SPEC_DIGEST, ""),
            )
        )
    return sorted(found, key=lambda v: int(v.version))


def days(storage: Storage, spec: PipelineSpec, known: list[Version]) -> list[Day]:
    """One row per monitored day, in date order; ``known`` is ``versions()``, read once by the caller."""
    promoted = [v for v in known if v.decision == PROMOTED]
    rows = []
    for key in storage.files(keys.reports_prefix(spec), f"/{keys.DECISION}"):
        ds = keys.partition_day(key)
        decision: dict[str, Any] = json.loads(storage.read_bytes(key))
        performance = (decision.get("performance") or {}).get(spec.training.primary_metric)
        champions = [v.version for v in promoted if v.as_of <= ds]
        rows.append(
            Day(
                ds=ds,
                drift_share=decision.get("drift_share"),
                drifted_columns=[str(column) for column in decision.get("drifted_columns", [])],
                prediction_drift=decision.get("prediction_drift"),
                retrain=bool(decision.get("retrain")),
                decision=decision.get("reason", "") if decision.get("retrain") else decision.get("why_not") or "-",
                performance=performance,
                trained=[v for v in known if v.as_of == ds],
                champion=champions[-1] if champions else None,
            )
        )
    return sorted(rows, key=lambda d: d.ds)


def table(rows: list[Day], metric: str) -> str:
    """The days as text, ``metric`` (the primary one) on the labels that had arrived."""
    header = f"{'day':<11} {'drift':>6} {metric[:8]:>8}  {'retrain':<7}  {'trained':<22} {'champion':<8}  why"
    lines = [header, "-" * len(header)]
    for day in rows:
        trained = ", ".join(f"v{v.version} {v.decision}" for v in day.trained) or "-"
        drift = f"{day.drift_share:.0%}" if day.drift_share is not None else "-"
        value = f"{day.performance:.3f}" if day.performance is not None else "-"
        lines.append(
            f"{day.ds:<11} {drift:>6} {value:>8}  {'yes' if day.retrain else 'no':<7}  {trained:<22} "
            f"{('v' + day.champion) if day.champion else '-':<8}  {day.decision[:90]}"
        )
    return "\n".join(lines)
