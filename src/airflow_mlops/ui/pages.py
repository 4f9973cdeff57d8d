"""Server-rendered HTML of the monitoring page. The functions here turn what was read into plain values;
the Jinja templates in ``templates/`` lay them out with autoescaping on, so every value from data (column
names, messages, tags, paths) is escaped and only markup written in a template is trusted. No scripts, no
external assets: the page works on a closed network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined

from airflow_mlops.contracts import CHAMPION
from airflow_mlops.links import version_anchor

if TYPE_CHECKING:
    from airflow_mlops.contracts import AliasMove
    from airflow_mlops.steps.history import Day, Version
    from airflow_mlops.ui.catalog import Overview

# Read from the installed package, so a wheel serves the same pages as a checkout.
TEMPLATES = Environment(
    loader=PackageLoader("airflow_mlops.ui", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

# A section of the monitoring page: a pipeline (pipeline_section) or why it cannot be shown (error_section).
Section = dict[str, Any]


def render(template: str, title: str, prefix: str, **values: Any) -> str:
    return TEMPLATES.get_template(template).render(title=title, prefix=prefix, **values)


def url(prefix: str, *parts: str) -> str:
    return prefix + "".join(f"/{quote(part, safe='=')}" for part in parts)


def percent(value: float | None) -> str:
    return f"{value:.0%}" if value is not None else "-"


def number(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "-"


def code(version: Version) -> str:
    """Which code trained a version: its DAG bundle's version (short) and its spec's digest."""
    bundle = version.bundle_version[:10] or "unversioned bundle"
    return f"{bundle}, spec {version.spec_digest[:8]}" if version.spec_digest else bundle


def move_versions(move: AliasMove) -> str:
    if move["action"] == "shadow":
        return f"v{move.get('challenger')} beside v{move['champion']}"
    return f"v{move['previous']} \u2192 v{move['champion']}" if move["previous"] else f"v{move['champion']}"


def drift_chart(days: list[Day], threshold: float, width: int = 640, height: int = 170) -> dict[str, Any] | None:
    """Where the drift chart's marks go, in pixels (the template draws them); None without drift reports."""
    points = [(d.ds, d.drift_share, d.retrain) for d in days if d.drift_share is not None]
    if not points:
        return None
    left, right, top, bottom = 44, 12, 10, 26
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(i: int) -> float:
        return left + (plot_w * i / (len(points) - 1) if len(points) > 1 else plot_w / 2)

    def y(share: float) -> float:
        return top + plot_h * (1 - min(max(share, 0.0), 1.0))

    return {
        "width": width,
        "height": height,
        "left": left,
        "right": width - right,
        "grid": [(f"{y(v):.1f}", f"{y(v) + 4:.1f}", percent(v)) for v in (0.0, 0.5, 1.0)],
        "threshold_y": f"{y(threshold):.1f}",
        "threshold": percent(threshold),
        "line": " ".join(f"{x(i):.1f},{y(share):.1f}" for i, (_, share, _) in enumerate(points)),
        "dots": [
            (
                f"{x(i):.1f}",
                f"{y(share):.1f}",
                "#b3261e" if retrain else "#2b6cb0",
                f"{ds}: {percent(share)} drifted" + (", retraining" if retrain else ""),
            )
            for i, (ds, share, retrain) in enumerate(points)
        ],
        "first": points[0][0],
        "last": points[-1][0],
    }


def pipeline_section(view: Overview, prefix: str) -> Section:
    """Champion and history of versions, drift per day with its reports, latest validations."""
    spec = view.pipeline.spec
    assert spec is not None
    aliases_of: dict[str, list[str]] = {}
    for alias, version in sorted(view.aliases.items()):
        aliases_of.setdefault(version, []).append(alias)
    champion = view.aliases.get(CHAMPION)
    versions = list(reversed(view.versions))
    metric_names = sorted({m for v in versions for m in v.metrics})
    return {
        "name": spec.name,
        "description": spec.description,
        "champion": f"v{champion}" if champion else "none yet",
        "model": spec.registered_model_name,
        "dags": ", ".join(view.pipeline.dag_ids),
        "metric_names": metric_names,
        "versions": [
            {
                "anchor": version_anchor(spec.name, v.version),
                "version": v.version,
                "champion": v.version == champion,
                "aliases": ", ".join(aliases_of.get(v.version, [])),
                "as_of": v.as_of or "-",
                "trigger": v.trigger or "-",
                "decision": v.decision,
                "reason": v.reason or "-",
                "metrics": [number(v.metrics.get(m)) for m in metric_names],
                "code": code(v),
                "run": url(prefix, "runs", v.run_id),
            }
            for v in versions
        ],
        "primary_metric": spec.training.primary_metric,
        "chart": drift_chart(view.days, spec.monitoring.drift.max_drifted_share),
        "days": [
            {
                "ds": d.ds,
                "drift": percent(d.drift_share) + (" · scores drifted" if d.prediction_drift else ""),
                "performance": number(d.performance),
                "retraining": ("yes: " if d.retrain else "no: ") + d.decision,
                "trained": ", ".join(f"v{v.version} {v.decision}" for v in d.trained) or "-",
                "champion": f"v{d.champion}" if d.champion else "-",
                "report": report_url(prefix, view.drift_reports, d.ds),
                "performance_report": report_url(prefix, view.performance_reports, d.ds),
            }
            for d in reversed(view.days)
        ],
        "moves": [
            {
                "at": m["at"][:19].replace("T", " "),
                "action": m["action"],
                "versions": move_versions(m),
                "actor": m["actor"],
                "reason": m["reason"],
                "source": m["source"],
            }
            for m in view.moves
        ],
        "validations": [
            {
                "stage": v.stage,
                "url": url(prefix, "validation", *v.key.split("/")),
                "name": v.source.rsplit("/", 1)[-1] or v.key,
                "rows": v.rows,
                "state": "passed" if v.passed else "failed",
                "blocking": "; ".join(v.blocking) or "-",
                "warnings": "; ".join(v.warnings) or "-",
            }
            for v in view.validations
        ],
    }


def report_url(prefix: str, reports: dict[str, str], ds: str) -> str | None:
    return url(prefix, "reports", *reports[ds].split("/")) if ds in reports else None


def error_section(title: str, message: str) -> Section:
    return {"title": title, "error": message}


def monitoring_page(title: str, sections: list[Section], prefix: str) -> str:
    return render("pipelines.html", title, prefix, sections=sections)


def validation_page(key: str, result: dict[str, Any], prefix: str) -> str:
    return render(
        "validation.html",
        "Validation result",
        prefix,
        key=key,
        suite=result.get("suite", ""),
        source=result.get("source", ""),
        rows=result.get("rows", ""),
        state="passed" if result.get("passed") else "failed",
        failures=len(result.get("blocking_failures", [])),
        warnings=len(result.get("warnings", [])),
        outcomes=[
            (o.get("expectation"), o.get("column") or "-", o.get("severity"), o.get("success"), o.get("detail"))
            for o in result.get("outcomes", [])
        ],
    )


def run_page(run: Any, pipeline: str, versions: list[Any], prefix: str) -> str:
    data = run.data
    return render(
        "run.html",
        f"MLflow run {data.tags.get('mlflow.runName', run.info.run_id)}",
        prefix,
        run_id=run.info.run_id,
        pipeline=pipeline,
        pipeline_url=url(prefix, "pipelines", pipeline),
        experiment=run.info.experiment_id,
        status=run.info.status,
        versions=[
            (
                url(prefix, "pipelines", pipeline) + "#" + quote(version_anchor(pipeline, str(v.version)), safe=""),
                f"{v.name} v{v.version}",
            )
            for v in versions
        ],
        metrics=sorted(data.metrics.items()),
        params=sorted(data.params.items()),
        tags=sorted((k, v) for k, v in data.tags.items() if not k.startswith("mlflow.")),
    )


def feature_view_page(view: Any, window: dict[str, str], offline_days: list[str], prefix: str) -> str:
    intervals = [(str(start), str(end)) for start, end in getattr(view, "materialization_intervals", [])]
    return render(
        "feature_view.html",
        f"Feature view {view.name}",
        prefix,
        name=view.name,
        entities=", ".join(view.entities),
        ttl=view.ttl,
        online=view.online,
        start=window.get("start") or "-",
        end=window.get("end") or "-",
        features=[(f.name, str(f.dtype)) for f in view.features],
        intervals=list(reversed(intervals[-20:])),
        days=", ".join(offline_days) or "none",
    )
