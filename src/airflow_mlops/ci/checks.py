"""The checks of ``airflow-mlops ci`` on a project folder (``dags/``, ``include/pipelines/``):

1. every spec valid, and the specs fit on one stack together;
2. every DAG file imports without error (a cycle is one), within the parse budget, without importing an
   ML library; every DAG has an owner, tags, and retries on every task;
3. every pipeline end to end on a small sample (:mod:`airflow_mlops.ci.run`), and its model checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from airflow_mlops.ci.report import Check

PARSE_BUDGET_MS = 100.0
DEFAULT_OWNER = "airflow"  # what a DAG without an owner gets from Airflow's [operators] default_owner


@dataclass(frozen=True)
class Project:
    root: Path
    specs: Path
    dags: Path

    @classmethod
    def at(cls, root: Path, specs: Path | None = None, dags: Path | None = None) -> Project:
        root = root.resolve()
        return cls(root, (specs or root / "include" / "pipelines").resolve(), (dags or root / "dags").resolve())

    def relative(self, path: str | Path) -> str:
        path = Path(path)
        return str(path.relative_to(self.root)) if path.is_relative_to(self.root) else str(path)


def check_specs(project: Project) -> tuple[list[Check], list[Path]]:
    """A check per spec file, one for the specs together; and the paths of the valid ones."""
    from airflow_mlops.spec import SpecError, check_apart, load_spec

    paths = (
        sorted(p for p in project.specs.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))
        if project.specs.is_dir()
        else []
    )
    if not paths:
        return [Check("specs", "pipeline specs", False, f"no pipeline spec (*.yaml) in {project.specs}")], []
    checks, valid, specs = [], [], []
    for path in paths:
        started = time.monotonic()
        try:
            spec = load_spec(path)
        except SpecError as exc:
            checks.append(Check("specs", project.relative(path), False, str(exc), time.monotonic() - started))
            continue
        dags = ", ".join(spec.dag_id(k) for k in ("features", "training", "monitoring", "rollback"))
        checks.append(Check("specs", project.relative(path), True, f"valid: {dags}", time.monotonic() - started))
        valid.append(path)
        specs.append(spec)
    try:
        check_apart(specs)
        checks.append(Check("specs", "one stack", True, f"{len(specs)} pipelines write to places of their own"))
    except SpecError as exc:
        checks.append(Check("specs", "one stack", False, str(exc)))
        valid = []
    return checks, valid


def check_dags(project: Project, budget_ms: float = PARSE_BUDGET_MS) -> list[Check]:
    """Parse the DAG folder in a fresh interpreter, as the DAG processor would, and judge what it reports."""
    if not project.dags.is_dir():
        return [Check("dags", "DAG folder", False, f"no DAG folder at {project.dags}")]
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "airflow_mlops.ci.dagbag", str(project.dags)],
        capture_output=True,
        text=True,
        env=os.environ,
    )
    if out.returncode != 0:
        return [Check("dags", "parse", False, f"parsing {project.dags} crashed:\n{out.stderr[-3000:]}")]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    seconds = time.monotonic() - started
    checks = []
    for path, (ms, first_ms) in sorted(report["files"].items()):
        name, error = project.relative(path), report["errors"].get(path)
        checks.append(Check("dags", f"{name} imports", error is None, error or "no import error"))
        within = ms <= budget_ms
        detail = f"{ms:.0f} ms, {'within' if within else 'over'} the {budget_ms:.0f} ms budget"
        checks.append(
            Check("dags", f"{name} parse time", within, f"{detail} (first parse, importing modules: {first_ms:.0f} ms)")
        )
    for path, error in sorted(report["errors"].items()):
        if path not in report["files"]:
            checks.append(Check("dags", f"{project.relative(path)} imports", False, error))
    for dag_id, dag in sorted(report["dags"].items()):
        problems = []
        if dag["owner"] in ("", DEFAULT_OWNER):
            problems.append("no owner (default_args owner, or the spec's owner)")
        if not dag["tags"]:
            problems.append("no tags")
        if dag["no_retries"]:
            problems.append(f"tasks without retries: {', '.join(dag['no_retries'])}")
        detail = (
            "; ".join(problems) or f"owner {dag['owner']}, tags {dag['tags']}, {len(dag['tasks'])} tasks with retries"
        )
        checks.append(Check("dags", f"{dag_id} ({project.relative(dag['file'])})", not problems, detail))
    heavy = report["heavy"]
    checks.append(
        Check(
            "dags",
            "no ML library at parse time",
            not heavy,
            f"imported while parsing: {', '.join(heavy)} (import them inside tasks)" if heavy else "none imported",
            seconds,
        )
    )
    if not report["dags"] and not report["errors"]:
        checks.append(Check("dags", "DAGs", False, f"no DAG in {project.dags}"))
    return checks


def run_pipelines(project: Project, specs: list[Path], log: Path) -> list[Check]:
    """Each valid pipeline end to end on its sample, in a fresh interpreter (its own throwaway stack)."""
    result = log.with_suffix(".json")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as output:
        code = subprocess.run(
            [sys.executable, "-m", "airflow_mlops.ci.run", str(project.root), str(result), *map(str, specs)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        ).returncode
    if code != 0 or not result.exists():
        tail = log.read_text(errors="replace")[-2000:]
        return [Check("run", "small-data run", False, f"the run crashed (exit {code}); log {log}:\n{tail}")]
    return [Check(**c) for c in json.loads(result.read_text())]


def run_ci(project: Project, *, budget_ms: float = PARSE_BUDGET_MS, sample_run: bool = True, log: Path) -> list[Check]:
    checks, specs = check_specs(project)
    checks += check_dags(project, budget_ms)
    if sample_run and specs:
        checks += run_pipelines(project, specs, log)
    return checks
