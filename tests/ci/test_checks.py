"""``airflow-mlops ci``'s spec and DAG checks on projects with every kind of fault; the small-data run
refusing a sample that fails the raw gate. (scripts/test.sh runs the command on this repository.)"""

import json
import re
import shutil
import xml.etree.ElementTree as ET

import pandas as pd
import yaml

from airflow_mlops.ci.checks import Project, check_dags, check_specs
from airflow_mlops.dev.cli import main
from tests.conftest import DEMAND_LEVELS, RIDES, SPEC_PATH, rides_data, spec_variant

GOOD_DAG = """
from datetime import datetime
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG
with DAG("{dag_id}", start_date=datetime(2026, 1, 1), schedule=None, tags=["t"],
         default_args={{"owner": "team", "retries": 2}}):
    EmptyOperator(task_id="a") >> EmptyOperator(task_id="b")
"""


def verdicts(checks) -> dict[str, tuple[bool, str]]:
    return {c.name: (c.ok, c.detail) for c in checks}


def test_dag_files_are_checked_for_errors_cycles_owner_tags_retries_ml_imports_and_parse_time(tmp_path):
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "good.py").write_text(GOOD_DAG.format(dag_id="good"))
    (dags / "broken.py").write_text("from airflow.sdk import DAG\nimport no_such_module_here\n")
    (dags / "cycle.py").write_text(
        GOOD_DAG.format(dag_id="cycle")
        .replace('"b")', '"b") >> a')
        .replace('EmptyOperator(task_id="a") >>', 'a = EmptyOperator(task_id="a")\n    a >>')
    )
    (dags / "bare.py").write_text(
        GOOD_DAG.format(dag_id="bare").replace(', tags=["t"]', "").replace('"owner": "team", "retries": 2', "")
    )
    (dags / "heavy.py").write_text("import sklearn\n" + GOOD_DAG.format(dag_id="heavy"))
    (dags / "slow.py").write_text("import time\ntime.sleep(0.15)\n" + GOOD_DAG.format(dag_id="slow"))
    found = verdicts(check_dags(Project.at(tmp_path)))
    assert found["dags/good.py imports"] == (True, "no import error") and found["good (dags/good.py)"][0]
    assert not found["dags/broken.py imports"][0] and "no_such_module_here" in found["dags/broken.py imports"][1]
    assert not found["dags/cycle.py imports"][0] and "cycle" in found["dags/cycle.py imports"][1].lower()
    ok, detail = found["bare (dags/bare.py)"]
    assert not ok and "no owner" in detail and "no tags" in detail and "without retries: a, b" in detail
    assert found["no ML library at parse time"] == (False, "imported while parsing: sklearn (import them inside tasks)")
    ok, detail = found["dags/slow.py parse time"]
    assert not ok and "over the 100 ms budget" in detail
    assert found["dags/good.py parse time"][0]


def test_specs_are_checked_one_by_one_and_together(tmp_path):
    specs = tmp_path / "include" / "pipelines"
    specs.mkdir(parents=True)
    shutil.copy(spec_variant(tmp_path, "churn"), specs / "churn.yaml")
    shutil.copy(spec_variant(tmp_path, "again", name="again"), specs / "again.yaml")  # same feature view
    (specs / "broken.yaml").write_text(SPEC_PATH.read_text().replace("window_days: 21", "window_dayz: 21"))
    checks, valid = check_specs(Project.at(tmp_path))
    found = verdicts(checks)
    assert found["include/pipelines/churn.yaml"][0] and found["include/pipelines/again.yaml"][0]
    assert (
        not found["include/pipelines/broken.yaml"][0]
        and "training.window_dayz" in found["include/pipelines/broken.yaml"][1]
    )
    ok, detail = found["one stack"]
    assert not ok and "features.feature_view 'customer_features'" in detail
    assert valid == []  # nothing runs when the specs cannot live on one stack
    checks, _ = check_specs(Project.at(tmp_path / "empty"))
    assert [c.ok for c in checks] == [False] and "no pipeline spec" in checks[0].detail


def test_a_sample_day_that_fails_the_raw_gate_fails_ci_naming_day_and_column(tmp_path, capsys):
    project = tmp_path / "acme"
    assert main(["init", "acme", "--path", str(project)]) == 0
    [first, *_] = sorted((project / "include/samples/acme/raw/acme/snapshots").glob("date=*/*.parquet"))
    frame = pd.read_parquet(first).astype({"plan": str})
    frame.loc[:10, "plan"] = "gold"
    frame.to_parquet(first, index=False)
    junit = tmp_path / "reports" / "ci.xml"
    assert main(["ci", str(project), "--junit", str(junit), "--log", str(tmp_path / "run.log")]) == 1
    out = capsys.readouterr().out
    day = first.parent.name.removeprefix("date=")
    assert f"FAIL  acme   features: the raw data gate blocked {day}" in out and "plan" in out
    assert "FAIL  acme   training: not run: features failed" in out
    root = ET.parse(junit).getroot()
    assert root.get("tests") == "16"
    [suite] = [s for s in root.iter("testsuite") if s.get("name") == "acme"]  # (not the DAG files' parse times)
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failed == ["features", "training", "monitoring", "model beats a constant predictor",
                      "same seed, same metrics", "predictions finite and in range"]  # fmt: skip
    [case] = [c for c in root.iter("testcase") if c.get("name") == "features"]
    assert "gold" in case.find("failure").text


def test_the_regression_example_passes_ci_end_to_end_on_its_kept_sample(tmp_path, capsys):
    """include/examples/rides (data.task: regression, a string key, category, bool, int32 and float32
    features) from landed days to the champion's predictions, as its README runs it, on the sample it
    keeps: the one its generator writes."""
    kept = RIDES / "include" / "samples" / "rides"
    rides_data.write(tmp_path / "generated", days=12)
    files = sorted(p.relative_to(kept) for p in kept.rglob("*.parquet"))
    assert files == sorted(p.relative_to(tmp_path / "generated") for p in (tmp_path / "generated").rglob("*.parquet"))
    for file in files:
        assert pd.read_parquet(kept / file).equals(pd.read_parquet(tmp_path / "generated" / file)), file
    assert main(["ci", str(RIDES), "--log", str(tmp_path / "run.log")]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "PASS  rides  features: 12 days passed the raw gate" in out
    assert "PASS  rides  model beats a constant predictor: rmse " in out
    assert "PASS  rides  same seed, same metrics: refitted twice: rmse " in out and " r2 " in out
    assert "PASS  rides  predictions finite and in range: 80 scores in" in out


def test_a_multiclass_pipeline_passes_ci_end_to_end_on_a_synthesised_sample(tmp_path, capsys):
    """The rides example turned multiclass (tomorrow's demand level), its sample synthesised from the spec;
    its C searched in two rounds of two mapped trial tasks."""
    project = tmp_path / "demand"
    shutil.copytree(RIDES, project, ignore=shutil.ignore_patterns("__pycache__", "samples"))
    specs, suites = project / "include" / "pipelines", project / "include" / "expectations"
    raw = yaml.safe_load((specs / "rides.yaml").read_text())
    raw["data"].update(task="multiclass", classes=DEMAND_LEVELS, label_column="demand_level")
    raw["training"].update(primary_metric="f1_macro", thresholds={"f1_macro": {"threshold": 0.5}})
    raw["training"]["model"] = {"trainer": "sklearn_logistic_regression"}
    raw["training"]["search"] = {"space": {"C": {"type": "float", "low": 0.01, "high": 10, "log": True}},
                                 "trials": 4, "parallel": 2, "validation_days": 2}  # fmt: skip
    raw["monitoring"]["drift"]["min_performance"] = {"roc_auc_ovr": 0.7}
    (specs / "rides.yaml").write_text(yaml.safe_dump(raw))
    in_set = {"column": "demand_level", "value_set": DEMAND_LEVELS}
    suite = {
        "name": "demand_training",
        "expectations": [{"type": "expect_column_values_to_be_in_set", "kwargs": in_set}],
    }
    (suites / "rides_training.json").write_text(json.dumps(suite))
    assert main(["ci", str(project), "--log", str(tmp_path / "run.log")]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert re.search(r"search: trial \d the best of 4 \(C=[\d.e-]+: f1_macro [\d.]+ on the validation days\)", out)
    assert "PASS  rides  model beats a constant predictor: f1_macro " in out
    assert "PASS  rides  same seed, same metrics: refitted twice: f1_macro " in out and " roc_auc_ovr " in out


def test_a_search_space_the_trainer_does_not_take_fails_ci_with_the_task_s_error(tmp_path, capsys):
    project = tmp_path / "acme"
    assert main(["init", "acme", "--path", str(project)]) == 0
    path = project / "include" / "pipelines" / "acme.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["training"]["search"] = {"space": {"max_leaf_node": {"type": "int", "low": 8, "high": 32}}, "trials": 2}
    path.write_text(yaml.safe_dump(raw))
    assert main(["ci", str(project), "--log", str(tmp_path / "run.log")]) == 1
    out = capsys.readouterr().out
    assert (
        "FAIL  acme   training: acme_training as of 2026-" in out
        and ": search.plan_round_1 failed: BadDataFailure: training.search.space max_leaf_node: not a parameter of "
        "training.model.trainer 'sklearn_gradient_boosting' (HistGradientBoostingClassifier.__init__() got an "
        "unexpected keyword argument 'max_leaf_node'); 6 more upstream_failed"
        in out
    ), out
