"""``airflow-mlops init``: a project whose three CI definitions are valid and run the same commands.
(tests/test_distribution.py runs those commands on the project made by the installed wheel.)"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from airflow_mlops.dev.cli import main
from airflow_mlops.spec import load_specs

CHECK_JSONSCHEMA = str(Path(sys.executable).with_name("check-jsonschema"))


def ci_commands(project: Path) -> dict[str, list[str]]:
    """The shell commands each CI definition runs, in order (Jenkins' own virtualenv prefix left out)."""
    workflow = yaml.safe_load((project / ".github" / "workflows" / "pipelines.yml").read_text())
    gitlab = yaml.safe_load((project / ".gitlab-ci.yml").read_text())
    jenkins = re.findall(r"sh '([^']+)'", (project / "Jenkinsfile").read_text())
    return {
        "github": [step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step],
        "gitlab": list(gitlab["pipelines"]["script"]),
        "jenkins": [c.removeprefix(".venv/bin/") for c in jenkins if c != "python -m venv .venv"],
    }


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("init") / "acme"
    assert main(["init", "acme_churn", "--path", str(path), "--owner", "growth"]) == 0
    return path


def test_init_writes_a_project_whose_spec_dag_file_and_sample_fit_together(project):
    [spec] = load_specs(project / "include" / "pipelines")
    assert (spec.name, spec.owner, spec.features.feature_view) == ("acme_churn", "growth", "acme_churn_features")
    assert "build_pipelines" in (project / "dags" / "pipelines.py").read_text()
    sample = project / "include" / "samples" / "acme_churn"
    assert len(list((sample / spec.data.raw_path).glob("date=*/*.parquet"))) == 8
    assert len(list((sample / spec.data.labels_path).glob("date=*/*.parquet"))) == 8
    assert (project / ".gitignore").read_text().startswith(".local/")
    pins = (project / "constraints.txt").read_text().splitlines()
    assert any(p.startswith("apache-airflow==3.3.") for p in pins) and not any(
        p.startswith("airflow-mlops") for p in pins
    )
    assert (project / "requirements.txt").read_text().startswith("airflow-mlops==")


def test_the_ci_definitions_are_valid_and_run_the_same_commands(project):
    for schema, path in (
        ("vendor.github-workflows", ".github/workflows/pipelines.yml"),
        ("vendor.gitlab-ci", ".gitlab-ci.yml"),
    ):
        checked = subprocess.run(
            [CHECK_JSONSCHEMA, "--builtin-schema", schema, str(project / path)], capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
    # Jenkins publishes no schema: its declarative skeleton and the JUnit report it keeps are checked here
    jenkinsfile = (project / "Jenkinsfile").read_text()
    assert (
        re.search(r"pipeline \{\s+agent .*\n.*stages \{", jenkinsfile, re.S)
        and "junit testResults: 'reports/ci.xml'" in jenkinsfile
    )
    assert jenkinsfile.count("{") == jenkinsfile.count("}")
    commands = ci_commands(project)
    assert (
        commands["github"]
        == commands["gitlab"]
        == commands["jenkins"]
        == [
            "pip install -r requirements.txt -c constraints.txt",
            "airflow-mlops ci . --junit reports/ci.xml --log reports/run.log",
        ]
    )


def test_init_refuses_a_bad_name_and_a_folder_in_use(tmp_path, capsys):
    assert main(["init", "Acme-Churn", "--path", str(tmp_path / "a")]) == 2
    assert "'Acme-Churn': lowercase letters, digits and _" in capsys.readouterr().err
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("mine")
    assert main(["init", "acme", "--path", str(tmp_path / "b")]) == 2
    assert (
        "exists and is not an empty folder" in capsys.readouterr().err
        and (tmp_path / "b" / "notes.txt").read_text() == "mine"
    )
    shutil.rmtree(tmp_path / "b")


@pytest.mark.parametrize(("task", "label"), [("regression", "revenue_next_30d"), ("multiclass", "next_plan")])
def test_init_task_writes_a_pipeline_of_that_task_whose_sample_passes_its_gates(tmp_path, task, label):
    from airflow_mlops.ci.sample import sample_root
    from airflow_mlops.steps.validation import validate_frame

    project = tmp_path / task
    assert main(["init", "acme", "--path", str(project), "--task", task]) == 0
    [spec] = load_specs(project / "include" / "pipelines")
    assert (spec.data.task, spec.data.label_column) == (task, label)
    assert spec.training.primary_metric == {"regression": "rmse", "multiclass": "f1_macro"}[task]
    sample = sample_root(project, spec)
    raw = pd.concat(pd.read_parquet(p) for p in sorted((sample / spec.data.raw_path).glob("date=*/*.parquet")))
    labels = pd.concat(pd.read_parquet(p) for p in sorted((sample / spec.data.labels_path).glob("date=*/*.parquet")))
    training_set = raw.merge(labels, on=[spec.data.entity_key, spec.data.timestamp_column])
    report = validate_frame(training_set, spec.training.training_suite, spec.data, source="sample", labelled=True)
    assert report.passed and report.warnings == [], report.summary()


@pytest.mark.parametrize("task", ["binary", "regression", "multiclass"])
def test_the_template_s_search_example_is_a_valid_search_once_uncommented(tmp_path, task):
    project = tmp_path / task
    assert main(["init", "acme", "--path", str(project), "--task", task]) == 0
    path = project / "include" / "pipelines" / "acme.yaml"
    text = path.read_text().replace("  # search:", "  search:").replace("  #   ", "    ")
    path.write_text(text.replace("params: {max_iter: 100, learning_rate: 0.1}", "params: {max_iter: 100}"))
    [spec] = load_specs(project / "include" / "pipelines")
    assert spec.training.search is not None and set(spec.training.search.space) == {"learning_rate", "max_leaf_nodes"}
