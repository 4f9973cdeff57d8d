"""Continuous delivery through the real scheduler: a project from ``airflow-mlops init`` in a git repository,
a staging Airflow started by ``airflow-mlops up --git-branch deploy/staging`` (a GitDagBundle tracking that
branch of the project's origin; stopped by Ctrl+C), and ``airflow-mlops deploy`` moving the branch.

Commit A deployed, a run created on A; commit B (one more expectation in the raw suite) deployed, a run
created on B; both then run: each records its commit and runs its own suite. Production refuses a commit
that has not run in staging and takes one that has; a commit failing CI, a ref that does not exist and an
unreachable staging are refused with nothing moved."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import pytest
import yaml

from airflow_mlops import keys
from airflow_mlops.dev.cli import main
from airflow_mlops.dev.stack import Api, answers, wait_for
from airflow_mlops.spec import load_spec
from tests.dev.up import airflow_mlops_up

pytestmark = pytest.mark.e2e

API_PORT = 18160


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def commit(project: Path, message: str) -> str:
    git(project, "add", "-A")
    git(project, "commit", "--quiet", "-m", message)
    return git(project, "rev-parse", "HEAD")


@contextmanager
def staging(project: Path, origin: Path, home: Path) -> Iterator[Api]:
    """``airflow-mlops up`` on the branch staging tracks, as a user starts it; Ctrl+C when done."""
    args = ("--paused", "--git-branch", "deploy/staging", "--git-repo", origin)
    with airflow_mlops_up(project, home, API_PORT, *args) as seen:
        assert any(line.startswith("DAGs, paused") for line in seen)
        assert f"starting Airflow for branch deploy/staging of {origin}" in seen[0]
        yield Api(f"http://localhost:{API_PORT}")


def deploy(project: Path, *args: str) -> int:
    return main(["deploy", str(project), "--no-run", *args])


def test_deployments_move_the_bundle_runs_keep_their_commit_and_production_waits_for_staging(tmp_path, capsys):
    origin, project = tmp_path / "origin.git", tmp_path / "acme"
    git(tmp_path, "init", "--quiet", "--bare", "-b", "main", str(origin))
    assert main(["init", "acme", "--path", str(project)]) == 0
    staging_api = f"http://localhost:{API_PORT}"
    (project / "deploy.yaml").write_text(
        yaml.safe_dump(
            {
                "remote": "origin",
                "environments": {
                    "staging": {"branch": "deploy/staging", "api": staging_api},
                    "production": {"branch": "deploy/production", "after": "staging", "min_successful_runs": 1},
                },
            }
        )
    )
    git(project, "init", "--quiet", "-b", "main")
    git(project, "config", "user.email", "ci@example.com")
    git(project, "config", "user.name", "CI")
    a = commit(project, "A: the pipeline")
    git(project, "remote", "add", "origin", str(origin))
    git(project, "push", "--quiet", "origin", "main")
    assert deploy(project, "--env", "staging") == 0
    assert git(origin, "rev-parse", "deploy/staging") == a

    suite_path = project / "include" / "expectations" / "acme_raw.json"
    suite = json.loads(suite_path.read_text())
    suite["expectations"].append(
        {
            "type": "expect_column_values_to_not_be_null",
            "kwargs": {"column": "spend_30d"},
            "meta": {"severity": "block"},
        }
    )
    suite_path.write_text(json.dumps(suite, indent=2))
    b = commit(project, "B: spend_30d may not be null")

    spec = load_spec(project / "include" / "pipelines" / "acme.yaml")
    home = tmp_path / "staging"
    shutil.copytree(project / "include" / "samples" / "acme", home / "data", dirs_exist_ok=True)
    days = sorted(p.name.removeprefix("date=") for p in (home / "data" / spec.data.raw_path).glob("date=*"))
    first, second = date.fromisoformat(days[0]), date.fromisoformat(days[1])
    dag_id = spec.dag_id("features")

    with staging(project, origin, home) as api:
        assert api.bundle_version(dag_id) == a and api.is_paused(dag_id)
        on_a = api.trigger(dag_id, f"{first}T00:00:00Z", {})  # queued while paused: created on A
        assert deploy(project, "--env", "staging") == 0
        assert f"staging: deploy/staging -> {b[:12]} (was {a[:12]})" in capsys.readouterr().out
        wait_for(lambda: api.bundle_version(dag_id) == b, "the bundle to pick up commit B", timeout=120)
        on_b = api.trigger(dag_id, f"{second}T00:00:00Z", {})
        api.unpause(dag_id)  # (the scheduled run it also creates waits for a day that never lands)

        def finished() -> dict[str, dict]:
            runs = {run["dag_run_id"]: run for run in api.runs(dag_id)}
            return runs if all(runs[r]["state"] in ("success", "failed") for r in (on_a, on_b)) else {}

        wait_for(lambda: bool(finished()), "the runs created on A and on B", timeout=300)
        runs = finished()
        assert {runs[on_a]["state"], runs[on_b]["state"]} == {"success"}, runs
        assert (runs[on_a]["bundle_version"], runs[on_b]["bundle_version"]) == (a, b)
        evaluated = {}
        for ds in (first, second):
            [result] = (home / "data" / keys.validation_results(spec, "raw")).glob(f"*date={ds}*.json")
            evaluated[ds] = json.loads(result.read_text())["evaluated"]
        assert evaluated[second] == evaluated[first] + 1  # each run ran its own commit's suite

        (project / "README.md").write_text("# acme\n")
        c = commit(project, "C: a change that never ran in staging")
        assert deploy(project, "--env", "production", "--ref", c) == 1
        assert f"{c[:12]} has 0 successful DAG runs in staging, production needs 1" in capsys.readouterr().err
        assert deploy(project, "--env", "production", "--ref", b) == 0
        assert git(origin, "rev-parse", "deploy/production") == b
        assert deploy(project, "--env", "production", "--ref", a) == 0  # rollback: A ran in staging too
        assert f"production: deploy/production -> {a[:12]} (was {b[:12]})" in capsys.readouterr().out

        (project / "include" / "pipelines" / "acme.yaml").write_text("name: Acme\n")
        d = commit(project, "D: a broken spec")
        assert deploy(project, "--env", "staging", "--ref", d) == 1
        refused = capsys.readouterr().err
        assert f"{d[:12]} fails CI, nothing deployed to staging" in refused and "acme.yaml" in refused
        assert deploy(project, "--env", "staging", "--ref", "no-such-branch") == 1
        assert "'no-such-branch' is not a commit" in capsys.readouterr().err
        assert git(origin, "rev-parse", "deploy/staging") == b  # nothing moved

    assert not answers(f"{staging_api}/api/v2/version")  # Ctrl+C stopped every component
    assert deploy(project, "--env", "production", "--ref", b) == 1
    refused = capsys.readouterr().err
    assert f"staging Airflow at {staging_api} cannot be read" in refused and "nothing deployed" in refused
