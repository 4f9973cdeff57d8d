"""Server-rendered HTML of the monitoring page. Every value from data (column names, messages, tags,
paths) goes through :class:`markupsafe.Markup` formatting, which escapes it; only the literal markup
written here is trusted. No scripts, no external assets: the page works on a closed network.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from markupsafe import Markup

from airflow_mlops.links import version_anchor

if TYPE_CHECKING:
    from airflow_mlops.history import Day
    from airflow_mlops.ui.catalog import Overview, Validation

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.2rem 2rem; color: #1d2733; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ccd; }
h3 { font-size: 1rem; margin-top: 1.4rem; }
table { border-collapse: collapse; margin: .5rem 0; font-size: .9rem; }
th, td { border: 1px solid #d5d9e0; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: #f1f3f6; } tr.champion td { background: #e8f4ea; }
td:nth-child(-n+3), td a { white-space: nowrap; }
.promoted { color: #1b7a34; } .rejected, .failed { color: #b3261e; } .pending { color: #8a6d00; }
.muted { color: #667; } .error { color: #b3261e; font-weight: 600; }
svg text { font-size: 11px; fill: #445; }
"""


def url(prefix: str, *parts: str) -> str:
    return prefix + "".join(f"/{quote(part, safe='=')}" for part in parts)


def document(title: str, body: Markup, prefix: str) -> str:
    return str(
        Markup(
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            "<style>{style}</style></head><body>"
            '<p class="muted"><a href="{home}/">Model monitoring</a></p><h1>{title}</h1>{body}</body></html>'
        ).format(title=title, style=Markup(STYLE), home=prefix, body=body)
    )


def table(headers: Iterable[str], rows: Iterable[Iterable[Any]], row_attrs: Iterable[Markup] | None = None) -> Markup:
    head = Markup("").join(Markup("<th>{}</th>").format(h) for h in headers)
    attrs = iter(row_attrs) if row_attrs is not None else None
    body = Markup("").join(
        Markup("<tr{}>{}</tr>").format(
            next(attrs) if attrs else Markup(""),
            Markup("").join(Markup("<td>{}</td>").format(cell) for cell in row),
        )
        for row in rows
    )
    return Markup("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>").format(head, body)


def percent(value: float | None) -> str:
    return f"{value:.0%}" if value is not None else "-"


def number(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "-"


def link(href: str, text: str) -> Markup:
    return Markup('<a href="{}">{}</a>').format(href, text)


def drift_chart(days: list[Day], threshold: float, width: int = 640, height: int = 170) -> Markup:
    """Share of drifted features per day as an inline SVG line, with the retraining threshold dashed."""
    points = [(d.ds, d.drift_share, d.retrain) for d in days if d.drift_share is not None]
    if not points:
        return Markup('<p class="muted">No drift reports yet.</p>')
    left, right, top, bottom = 44, 12, 10, 26
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(i: int) -> float:
        return left + (plot_w * i / (len(points) - 1) if len(points) > 1 else plot_w / 2)

    def y(share: float) -> float:
        return top + plot_h * (1 - min(max(share, 0.0), 1.0))

    line = " ".join(f"{x(i):.1f},{y(share):.1f}" for i, (_, share, _) in enumerate(points))
    dots = Markup("").join(
        Markup('<circle cx="{:.1f}" cy="{:.1f}" r="3.5" fill="{}"><title>{}: {} drifted{}</title></circle>').format(
            x(i), y(share), "#b3261e" if retrain else "#2b6cb0", ds, percent(share), ", retraining" if retrain else ""
        )
        for i, (ds, share, retrain) in enumerate(points)
    )
    grid = Markup("").join(
        Markup(
            '<line x1="{l}" x2="{r}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e6ea"/>'
            '<text x="{tx}" y="{ty:.1f}" text-anchor="end">{label}</text>'
        ).format(l=left, r=width - right, y=y(v), tx=left - 6, ty=y(v) + 4, label=percent(v))
        for v in (0.0, 0.5, 1.0)
    )
    return Markup(
        '<svg role="img" aria-label="share of drifted features per day" width="{w}" height="{h}" '
        'viewBox="0 0 {w} {h}">{grid}'
        '<line x1="{l}" x2="{r}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="#b3261e" stroke-dasharray="5,4">'
        "<title>retraining threshold {threshold}</title></line>"
        '<polyline points="{line}" fill="none" stroke="#2b6cb0" stroke-width="2"/>{dots}'
        '<text x="{l}" y="{by}">{first}</text><text x="{r}" y="{by}" text-anchor="end">{last}</text></svg>'
    ).format(
        w=width,
        h=height,
        grid=grid,
        l=left,
        r=width - right,
        ty=y(threshold),
        threshold=percent(threshold),
        line=line,
        dots=dots,
        by=height - 6,
        first=points[0][0],
        last=points[-1][0],
    )


def validation_rows(validations: list[Validation], prefix: str) -> Markup:
    return table(
        ["stage", "data", "rows", "result", "blocking failures", "warnings"],
        (
            (
                v.stage,
                link(url(prefix, "validation", *v.key.split("/")), v.source.rsplit("/", 1)[-1] or v.key),
                v.rows,
                Markup('<span class="{0}">{0}</span>').format("passed" if v.passed else "failed"),
                "; ".join(v.blocking) or "-",
                "; ".join(v.warnings) or "-",
            )
            for v in validations
        ),
    )


def pipeline_section(view: Overview, prefix: str) -> Markup:
    """Champion and history of versions, drift per day with its reports, latest validations."""
    spec = view.pipeline.spec
    assert spec is not None
    name = spec.name
    aliases_of: dict[str, list[str]] = {}
    for alias, version in sorted(view.aliases.items()):
        aliases_of.setdefault(version, []).append(alias)
    champion = view.aliases.get("champion")
    versions = list(reversed(view.versions))
    metric_names = sorted({m for v in versions for m in v.metrics})
    version_table = table(
        ["version", "alias", "trained on", "trigger", "decision", "why", *metric_names, "run"],
        (
            (
                Markup('<span id="{}">v{}</span>').format(version_anchor(name, v.version), v.version),
                ", ".join(aliases_of.get(v.version, [])),
                v.as_of or "-",
                v.trigger or "-",
                Markup('<span class="{0}">{0}</span>').format(v.decision),
                v.reason or "-",
                *(number(v.metrics.get(m)) for m in metric_names),
                link(url(prefix, "runs", v.run_id), "run"),
            )
            for v in versions
        ),
        (Markup(' class="champion"') if v.version == champion else Markup("") for v in versions),
    )
    day_table = table(
        ["day", "drift", f"{spec.training.primary_metric} (labelled)", "retraining", "trained", "champion", "report"],
        (
            (
                d.ds,
                percent(d.drift_share),
                number(d.performance),
                ("yes: " if d.retrain else "no: ") + d.decision,
                ", ".join(f"v{v.version} {v.decision}" for v in d.trained) or "-",
                f"v{d.champion}" if d.champion else "-",
                link(url(prefix, "reports", *view.drift_reports[d.ds].split("/")), "drift report")
                if d.ds in view.drift_reports
                else "-",
            )
            for d in reversed(view.days)
        ),
    )
    return Markup(
        '<section id="{name}"><h2>{name}</h2><p>{description}</p>'
        "<p>Champion: <strong>{champion}</strong> &middot; model <code>{model}</code> &middot; DAGs {dags}</p>"
        "<h3>Model versions</h3>{versions}"
        "<h3>Drift: share of drifted features per day</h3>{chart}{days}"
        "<h3>Latest validation results</h3>{validations}</section>"
    ).format(
        name=name,
        description=spec.description,
        champion=f"v{champion}" if champion else "none yet",
        model=spec.registered_model_name,
        dags=", ".join(view.pipeline.dag_ids),
        versions=version_table if versions else Markup('<p class="muted">No versions registered yet.</p>'),
        chart=drift_chart(view.days, spec.monitoring.drift.max_drifted_share),
        days=day_table if view.days else Markup(""),
        validations=validation_rows(view.validations, prefix)
        if view.validations
        else Markup('<p class="muted">No validation results yet.</p>'),
    )


def error_section(title: str, message: str) -> Markup:
    return Markup('<section><h2>{}</h2><p class="error">{}</p></section>').format(title, message)


def validation_page(key: str, result: dict[str, Any], prefix: str) -> str:
    outcomes = result.get("outcomes", [])
    body = Markup(
        "<p>Suite <code>{suite}</code> on <code>{source}</code>: {rows} rows, "
        '<span class="{state}">{state}</span> ({failures} blocking failures, {warnings} warnings).</p>{outcomes}'
        '<p class="muted">Stored as <code>{key}</code>.</p>'
    ).format(
        suite=result.get("suite", ""),
        source=result.get("source", ""),
        rows=result.get("rows", ""),
        state="passed" if result.get("passed") else "failed",
        failures=len(result.get("blocking_failures", [])),
        warnings=len(result.get("warnings", [])),
        outcomes=table(
            ["expectation", "column", "severity", "success", "detail"],
            (
                (o.get("expectation"), o.get("column") or "-", o.get("severity"), o.get("success"), o.get("detail"))
                for o in outcomes
            ),
        ),
        key=key,
    )
    return document("Validation result", body, prefix)


def run_page(run: Any, pipeline: str, versions: list[Any], prefix: str) -> str:
    data = run.data
    body = Markup(
        "<p>Run <code>{run_id}</code> of pipeline {pipeline} (experiment {experiment}), {status}.</p>"
        "<p>Registered versions: {versions}</p>"
        "<h3>Metrics</h3>{metrics}<h3>Params</h3>{params}<h3>Tags</h3>{tags}"
    ).format(
        run_id=run.info.run_id,
        pipeline=link(url(prefix, "pipelines", pipeline), pipeline),
        experiment=run.info.experiment_id,
        status=run.info.status,
        versions=Markup(", ").join(
            link(
                url(prefix, "pipelines", pipeline) + "#" + quote(version_anchor(pipeline, str(v.version)), safe=""),
                f"{v.name} v{v.version}",
            )
            for v in versions
        )
        or "none",
        metrics=table(["metric", "value"], sorted(data.metrics.items())),
        params=table(["param", "value"], sorted(data.params.items())),
        tags=table(["tag", "value"], sorted((k, v) for k, v in data.tags.items() if not k.startswith("mlflow."))),
    )
    return document(f"MLflow run {data.tags.get('mlflow.runName', run.info.run_id)}", body, prefix)


def feature_view_page(view: Any, window: dict[str, str], offline_days: list[str], prefix: str) -> str:
    intervals = [(str(start), str(end)) for start, end in getattr(view, "materialization_intervals", [])]
    body = Markup(
        "<p>Feast feature view <code>{name}</code>: entities {entities}, TTL {ttl}, online {online}.</p>"
        "<p>This task materialised <code>{start}</code> to <code>{end}</code> into the online store.</p>"
        "<h3>Features</h3>{features}<h3>Materialisation intervals (latest first)</h3>{intervals}"
        "<h3>Offline partitions</h3><p>{days}</p>"
    ).format(
        name=view.name,
        entities=", ".join(view.entities),
        ttl=view.ttl,
        online=view.online,
        start=window.get("start") or "-",
        end=window.get("end") or "-",
        features=table(["feature", "dtype"], ((f.name, str(f.dtype)) for f in view.features)),
        intervals=table(["start", "end"], reversed(intervals[-20:])) if intervals else "none yet",
        days=", ".join(offline_days) or "none",
    )
    return document(f"Feature view {view.name}", body, prefix)
