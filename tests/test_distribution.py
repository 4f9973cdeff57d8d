"""The package as users get it: a built wheel (not an editable checkout) installed with the constraints
into a fresh virtualenv, then looked at through Airflow's own CLI from a folder outside the repository,
with nothing of the repository on ``sys.path``; a project made by its ``init`` passing its own CI; and
the steps' tests run against that install.

The virtualenv's Python is ``DIST_PYTHON`` (scripts/test.sh sets a Python 3.12, so CI covers a second
Python with its own constraints file), or this one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.ci.test_scaffold import ci_commands
from tests.conftest import ROOT

pytestmark = pytest.mark.distribution

DIST_PYTHON = os.environ.get("DIST_PYTHON") or sys.executable


def run(argv: list[str | Path], cwd: Path, env: dict[str, str] | None = None) -> str:
    completed = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, f"{argv} failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
    return completed.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The venv's bin folder, and an environment for a throwaway Airflow home outside the repository."""
    work = tmp_path_factory.mktemp("dist")
    # sdist first, then the wheel from the sdist: what is released, never a stale build/ folder's leftovers
    run([sys.executable, "-m", "build", "--outdir", work / "wheel", ROOT], cwd=work)
    (wheel,) = (work / "wheel").glob("airflow_mlops-*.whl")
    run([DIST_PYTHON, "-m", "venv", work / "venv"], cwd=work)
    bin_dir = work / "venv" / "bin"
    version = run([bin_dir / "python", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], cwd=work).strip()
    constraints = ROOT / "constraints" / f"constraints-{version}.txt"
    # with the test extra, for the steps' tests below; modules compile when first imported
    pip = [bin_dir / "python", "-m", "pip", "install", "--quiet", "--no-compile", "-c", constraints]
    run([*pip, f"{wheel}[test]"], cwd=work)
    home = work / "airflow"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTHON", "VIRTUAL_ENV", "MLOPS"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(work / "dags"),
        PATH=f"{bin_dir}{os.pathsep}{env['PATH']}",
    )
    return bin_dir, env


def airflow_json(installed: tuple[Path, dict[str, str]], *args: str) -> list[dict[str, object]]:
    bin_dir, env = installed
    out = run([bin_dir / "airflow", *args, "--output", "json"], cwd=Path(env["AIRFLOW_HOME"]).parent, env=env)
    listed: list[dict[str, object]] = json.loads(out)
    return listed


def test_the_wheel_is_a_provider_with_connection_types_links_a_notifier_and_a_plugin(installed) -> None:
    providers = airflow_json(installed, "providers", "list")
    assert any(p["package_name"] == "airflow-mlops" for p in providers), providers
    hooks = {h["connection_type"]: h["class"] for h in airflow_json(installed, "providers", "hooks")}
    assert {k: v for k, v in hooks.items() if k.startswith("mlops_")} == {
        "mlops_lake": "airflow_mlops.hooks.lake.LakeHook",
        "mlops_mlflow": "airflow_mlops.hooks.mlflow.MlflowHook",
        "mlops_feast": "airflow_mlops.hooks.feast.FeastHook",
    }
    widgets = {w["connection_parameter_name"] for w in airflow_json(installed, "providers", "widgets")}
    form = {"extra__mlops_lake__root", "extra__mlops_mlflow__tracking_uri", "extra__mlops_feast__online_store"}
    assert form <= widgets
    links = {link["extra_link_class_name"] for link in airflow_json(installed, "providers", "links")}
    assert "airflow_mlops.links.DriftReportLink" in links and "airflow_mlops.links.MlflowRunLink" in links
    notifiers = {n["notification_class_name"] for n in airflow_json(installed, "providers", "notifications")}
    assert "airflow_mlops.notifications.PipelineNotifier" in notifiers
    (plugin,) = [p for p in airflow_json(installed, "plugins") if p["name"] == "airflow_mlops"]
    assert "airflow.plugins" in str(plugin["source"])  # found by entry point, not in a plugins folder


def test_a_project_from_init_passes_the_commands_of_its_own_ci_definitions(installed) -> None:
    """A new user's first steps with the installed package: ``airflow-mlops init``, then what the
    project's CI runs on every push (its install, then ``airflow-mlops ci``: specs, DAG files parsed with
    no ML library, each pipeline end to end on its sample), from a folder outside the repository."""
    bin_dir, env = installed
    project = Path(env["AIRFLOW_HOME"]).parent / "acme"
    run([bin_dir / "airflow-mlops", "init", "acme", "--path", project], cwd=project.parent, env=env)
    commands = ci_commands(project)
    assert commands["github"] == commands["jenkins"] == commands["gitlab"]
    for command in commands["github"]:  # the wheel is not on an index here: pip finds it beside
        output = run(
            ["bash", "-c", command], cwd=project, env={**env, "PIP_FIND_LINKS": str(bin_dir.parents[1] / "wheel")}
        )
    assert "16 checks, all passed in" in output, output
    assert "PASS  acme   training: training set gate passed; acme_model v1 registered" in output
    suites = ET.parse(project / "reports" / "ci.xml").getroot()
    assert (suites.get("tests"), suites.get("failures")) == ("16", "0")


def test_torch_is_an_extra_and_asking_for_it_without_says_which(installed) -> None:
    bin_dir, env = installed
    code = (
        "import importlib.util\n"
        "from airflow_mlops.spec import ModelSpec, load_spec\n"
        "from airflow_mlops.steps.training import build_model\n"
        "assert importlib.util.find_spec('torch') is None, 'the core install pulled torch'\n"
        f"spec = load_spec({str(ROOT / 'include' / 'pipelines' / 'churn.yaml')!r})\n"
        "build_model(ModelSpec(trainer='torch_mlp'), spec.data)\n"
    )
    completed = subprocess.run(
        [bin_dir / "python", "-c", code], cwd=bin_dir, env=env, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode != 0
    assert "pip install 'airflow-mlops[torch]'" in completed.stderr.strip().splitlines()[-1]


def test_the_steps_pass_their_tests_on_the_installed_package(installed) -> None:
    """The spec, the storage, the task types and the data steps (validation, features), imported from the wheel in the
    fresh virtualenv, on its Python and its constraints' library versions. (Training, registry, drift and
    monitoring run there end to end in the init project's CI run above.)"""
    bin_dir, env = installed
    code = "import airflow_mlops, sys; print(airflow_mlops.__file__)"
    assert run([bin_dir / "python", "-c", code], cwd=ROOT, env=env).strip().startswith(str(bin_dir.parent))
    tests = [
        "tests/steps/test_validation.py",
        "tests/steps/test_features.py",
        "tests/test_spec.py",
        "tests/test_storage.py",
        "tests/test_task_types.py",
    ]
    run(
        [bin_dir / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not e2e", *tests], cwd=ROOT, env=env
    )
