"""``airflow-mlops deploy``: continuous delivery with Airflow 3's versioned DAG bundles.

Each environment's Airflow reads its DAGs from a ``GitDagBundle`` that tracks one branch of the project's
repository (``deploy.yaml`` names them). Deploying a commit = the CI checks pass on exactly that commit's
tree, then the environment's branch is moved to it; Airflow records the commit as the ``bundle_version``
of every DAG run created from then on, while runs created before finish on the code they started with.
An environment may require that a commit first ran in another one (production after staging): at least
``min_successful_runs`` successful DAG runs of the project's pipelines on that commit, read through that
environment's REST API. Rolling pipeline code back is deploying the earlier commit again.
"""

from __future__ import annotations

import os
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from airflow_mlops.ci.checks import Project, run_ci
from airflow_mlops.ci.report import Check

DEPLOY_FILE = "deploy.yaml"
BRANCH = r"^[A-Za-z0-9][A-Za-z0-9._/-]*$"


class DeployRefused(Exception):
    """Nothing was deployed; the message says why (the file, check, commit or environment)."""


class EnvironmentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    branch: str = Field(pattern=BRANCH)  # the ref the environment's GitDagBundle tracks
    api: str | None = None  # its Airflow's base URL, for environments that require runs here first
    after: str | None = None  # the environment a commit must have run in before this one
    min_successful_runs: int = Field(default=1, ge=1)


class DeployConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    remote: str = "origin"  # the repository the bundles clone: where deploy pushes the branches
    environments: dict[str, EnvironmentSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _gates_known(self) -> DeployConfig:
        for name, environment in self.environments.items():
            if environment.after is None:
                continue
            gate = self.environments.get(environment.after)
            if gate is None:
                raise ValueError(f"environments.{name}.after: no environment {environment.after!r}")
            if not gate.api:
                raise ValueError(f"environments.{environment.after}.api is needed: {name} reads its runs through it")
        return self


def load_config(project: Path) -> DeployConfig:
    path = project / DEPLOY_FILE
    try:
        raw = yaml.safe_load(path.read_text())
        return DeployConfig.model_validate(raw)
    except OSError as exc:
        raise DeployRefused(f"{path}: cannot read the deployment config: {exc.strerror}") from None
    except (yaml.YAMLError, ValidationError) as exc:
        raise DeployRefused(f"{path}: invalid deployment config: {exc}") from None


def git(project: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=project, capture_output=True, text=True)
    if done.returncode != 0:
        raise DeployRefused(f"git {' '.join(args)} failed in {project}: {done.stderr.strip()}")
    return done.stdout.strip()


def resolve(project: Path, ref: str) -> str:
    """The commit ``ref`` names (a branch, tag or sha); refused when there is none."""
    done = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd=project, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise DeployRefused(f"{ref!r} is not a commit of the repository at {project}: nothing deployed")
    return done.stdout.strip()


def deployed(project: Path, remote: str, branch: str) -> str | None:
    """The commit an environment's branch points at on the remote, if it exists yet."""
    listed = git(project, "ls-remote", remote, f"refs/heads/{branch}")
    return listed.split()[0] if listed else None


def checkout(project: Path, commit: str, into: Path) -> Path:
    """The commit's tree, as the environment's bundle will see it (no working-tree changes)."""
    archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=project, capture_output=True, check=True)
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into


def successful_runs(environment: str, spec: EnvironmentSpec, commit: str, dag_ids: list[str]) -> int:
    """Successful DAG runs of ``dag_ids`` on ``commit`` in an environment, through its REST API, with the
    credentials in ``<ENVIRONMENT>_AIRFLOW_USERNAME`` / ``_PASSWORD`` (default admin / admin)."""
    from airflow_mlops.dev.stack import Api, StackError

    prefix = environment.upper().replace("-", "_")
    api = Api(
        str(spec.api),
        os.environ.get(f"{prefix}_AIRFLOW_USERNAME", "admin"),
        os.environ.get(f"{prefix}_AIRFLOW_PASSWORD", "admin"),
    )
    known = None
    try:
        known = api.dag_ids()
        runs = [run for dag_id in dag_ids if dag_id in known for run in api.runs(dag_id)]
    except StackError as exc:
        raise DeployRefused(
            f"{environment} Airflow at {spec.api} cannot be read ({exc}): cannot tell whether {commit[:12]} "
            "ran there; nothing deployed"
        ) from None
    return sum(1 for run in runs if run.get("bundle_version") == commit and run.get("state") == "success")


@dataclass(frozen=True)
class Deployment:
    environment: str
    branch: str
    commit: str
    previous: str | None
    checks: list[Check]


def deploy(project: Path, environment: str, ref: str = "HEAD", *, sample_run: bool = True) -> Deployment:
    """Check, gate and move ``environment``'s branch to ``ref``'s commit; :class:`DeployRefused` otherwise."""
    from airflow_mlops.spec import SpecError, load_specs

    config = load_config(project)
    target = config.environments.get(environment)
    if target is None:
        raise DeployRefused(
            f"{project / DEPLOY_FILE}: no environment {environment!r} ({', '.join(config.environments)})"
        )
    commit = resolve(project, ref)
    with tempfile.TemporaryDirectory(prefix="airflow-mlops-deploy-") as folder:
        tree = checkout(project, commit, Path(folder))
        checks = run_ci(Project.at(tree), sample_run=sample_run, log=Path(folder) / "ci" / "run.log")
        failed = [c for c in checks if not c.ok]
        if failed:
            reasons = "\n  ".join(f"{c.suite} / {c.name}: {c.detail}" for c in failed)
            raise DeployRefused(f"{commit[:12]} fails CI, nothing deployed to {environment}:\n  {reasons}")
        if target.after:
            gate = config.environments[target.after]
            try:
                specs = load_specs(Project.at(tree).specs)
            except SpecError as exc:  # run_ci has passed them: only a race with the file system lands here
                raise DeployRefused(str(exc)) from None
            dag_ids = [s.dag_id(kind) for s in specs for kind in ("features", "training", "monitoring")]
            runs = successful_runs(target.after, gate, commit, dag_ids)
            if runs < target.min_successful_runs:
                raise DeployRefused(
                    f"{commit[:12]} has {runs} successful DAG runs in {target.after}, {environment} needs "
                    f"{target.min_successful_runs}: deploy it to {target.after} first and let it run; nothing deployed"
                )
    previous = deployed(project, config.remote, target.branch)
    git(project, "push", "--quiet", config.remote, f"+{commit}:refs/heads/{target.branch}")
    return Deployment(environment, target.branch, commit, previous, checks)
