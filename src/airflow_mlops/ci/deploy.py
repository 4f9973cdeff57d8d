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
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError, model_validator

from airflow_mlops.ci.checks import Project, run_ci
from airflow_mlops.ci.report import Check

DEPLOY_FILE = "deploy.yaml"
BRANCH = r"^[A-Za-z0-9][A-Za-z0-9._/-]*$"
REMOTE = r"^[A-Za-z0-9][\w.:/@+~-]*$"  # a remote's name or URL; never an option to git
ENVIRONMENT = r"^[a-z][a-z0-9_]*$"  # also names its credentials' variables: STAGING_AIRFLOW_USERNAME


class DeployRefused(Exception):
    """Nothing was deployed; the message says why (the file, check, commit or environment)."""


class EnvironmentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    branch: str = Field(pattern=BRANCH)  # the ref the environment's GitDagBundle tracks
    api: HttpUrl | None = None  # its Airflow's base URL, for environments that require runs here first
    after: str | None = None  # the environment a commit must have run in before this one
    min_successful_runs: int = Field(default=1, ge=1)


class DeployConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    remote: str = Field(default="origin", pattern=REMOTE)  # the repository the bundles clone
    environments: dict[str, EnvironmentSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _gates_known(self) -> DeployConfig:
        for name, environment in self.environments.items():
            if not re.match(ENVIRONMENT, name):
                raise ValueError(f"environments.{name}: lowercase letters, digits and _, starting with a letter")
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
        return DeployConfig.model_validate(yaml.safe_load(path.read_text()))
    except OSError as exc:
        raise DeployRefused(f"{path}: cannot read the deployment config: {exc.strerror}") from None
    except (yaml.YAMLError, ValidationError) as exc:
        raise DeployRefused(f"{path}: invalid deployment config: {exc}") from None


def git(project: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=project, capture_output=True, text=True)
    except FileNotFoundError:
        raise DeployRefused("git is not installed here: deploy moves a git branch") from None
    if done.returncode != 0:
        raise DeployRefused(f"git {' '.join(args)} failed in {project}: {done.stderr.strip()}")
    return done.stdout.strip()


def resolve(project: Path, ref: str) -> str:
    """The commit ``ref`` names (a branch, tag or sha); refused when there is none."""
    if git(project, "rev-parse", "--is-inside-work-tree") != "true":
        raise DeployRefused(f"{project} is not a git checkout: deploy delivers commits")
    done = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"],
        cwd=project,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise DeployRefused(f"{ref!r} is not a commit of the repository at {project}: nothing deployed")
    return done.stdout.strip()


def deployed(project: Path, remote: str, branch: str) -> str | None:
    """The commit an environment's branch points at on the remote, if it exists yet."""
    listed = git(project, "ls-remote", "--end-of-options", remote, f"refs/heads/{branch}")
    return listed.split()[0] if listed else None


def checkout(project: Path, commit: str, into: Path) -> Path:
    """The project's folder at ``commit`` as the environment's bundle clones it (a clean clone of the
    repository, not the working copy); the project may be a folder inside the repository."""
    top, inside = git(project, "rev-parse", "--show-toplevel"), git(project, "rev-parse", "--show-prefix")
    git(into.parent, "clone", "--quiet", "--shared", "--no-checkout", top, str(into))
    git(into, "checkout", "--quiet", "--detach", commit)
    shutil.rmtree(into / ".git")
    return into / inside


def successful_runs(environment: str, spec: EnvironmentSpec, commit: str, dag_ids: list[str]) -> int:
    """Successful DAG runs of ``dag_ids`` on ``commit`` in an environment, through its REST API, with the
    credentials in ``<ENVIRONMENT>_AIRFLOW_USERNAME`` / ``_PASSWORD`` (default admin / admin, the embedded
    stack's)."""
    from airflow_mlops.dev.stack import Api, StackError

    prefix, url = environment.upper(), str(spec.api).rstrip("/")
    username = os.environ.get(f"{prefix}_AIRFLOW_USERNAME", "admin")
    api = Api(url, username, os.environ.get(f"{prefix}_AIRFLOW_PASSWORD", "admin"))
    try:
        return sum(api.count_runs(dag_id, "success", commit) for dag_id in dag_ids)
    except (StackError, KeyError, ValueError) as exc:
        raise DeployRefused(
            f"{environment} Airflow at {url} cannot be read as {username!r} ({exc}): cannot tell whether "
            f"{commit[:12]} ran there; nothing deployed"
        ) from None


@dataclass(frozen=True)
class Deployment:
    environment: str
    branch: str
    commit: str
    previous: str | None
    checks: list[Check]


def deploy(project: Project, environment: str, ref: str = "HEAD", *, sample_run: bool = True, log: Path) -> Deployment:
    """Check, gate and move ``environment``'s branch to ``ref``'s commit; :class:`DeployRefused` otherwise.
    The branch moves only from the commit it held when the deploy began (a deploy that raced another one
    is refused, not silently undone)."""
    from airflow_mlops.spec import SpecError, load_specs

    root = project.root
    config = load_config(root)
    target = config.environments.get(environment)
    if target is None:
        raise DeployRefused(f"{root / DEPLOY_FILE}: no environment {environment!r} ({', '.join(config.environments)})")
    commit = resolve(root, ref)
    previous = deployed(root, config.remote, target.branch)
    with tempfile.TemporaryDirectory(prefix="airflow-mlops-deploy-") as folder:
        tree = checkout(root, commit, Path(folder) / "tree")
        at_commit = Project(tree, tree / project.relative(project.specs), tree / project.relative(project.dags))
        checks = run_ci(at_commit, sample_run=sample_run, log=log)
        failed = [c for c in checks if not c.ok]
        if failed:
            reasons = "\n  ".join(f"{c.suite} / {c.name}: {c.detail}" for c in failed)
            raise DeployRefused(f"{commit[:12]} fails CI, nothing deployed to {environment}:\n  {reasons}")
        if target.after:
            try:
                specs = load_specs(at_commit.specs)
            except SpecError as exc:  # run_ci has passed them: only a race with the file system lands here
                raise DeployRefused(str(exc)) from None
            dag_ids = [s.dag_id(kind) for s in specs for kind in ("features", "training", "monitoring")]
            runs = successful_runs(target.after, config.environments[target.after], commit, dag_ids)
            if runs < target.min_successful_runs:
                raise DeployRefused(
                    f"{commit[:12]} has {runs} successful DAG runs in {target.after}, {environment} needs "
                    f"{target.min_successful_runs}: deploy it to {target.after} first and let it run; nothing deployed"
                )
    lease = f"--force-with-lease=refs/heads/{target.branch}:{previous or ''}"
    git(root, "push", "--quiet", lease, "--end-of-options", config.remote, f"+{commit}:refs/heads/{target.branch}")
    return Deployment(environment, target.branch, commit, previous, checks)
