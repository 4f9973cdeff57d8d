"""What the factory builds from specs: tasks, schedules, queues, retries, and import errors that name the
spec's key. (Import errors, owners, tags, parse time and ML imports of dags/: ``airflow-mlops ci .``,
which scripts/test.sh runs on this repository.)"""

import json
import os
import subprocess
import sys
from pathlib import Path

from airflow_mlops.ci.dagbag import HEAVY
from tests.conftest import ROOT, SPEC_PATH

KINDS = ("features", "training", "monitoring", "rollback")


def parse_in_fresh_process(dags_folder: Path) -> dict:
    """Parse a DAG folder the way the DAG processor does, in a clean interpreter, and report."""
    code = f"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={str(dags_folder)!r})
print(json.dumps({{
    "dags": {{d: [t.task_id for t in bag.dags[d].tasks] for d in bag.dags}},
    "schedules": {{
        d: [type(bag.dags[d].timetable).__name__, getattr(bag.dags[d].timetable, "expression", None)]
        for d in bag.dags
    }},
    "errors": {{k: str(v) for k, v in bag.import_errors.items()}},
    "heavy": sorted(m for m in {HEAVY!r} if m in sys.modules),
}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def dag_file(dags: Path, name: str, specs: Path) -> Path:
    """A DAG folder holding one DAG file that builds the pipelines of ``specs`` (a spec or a folder)."""
    dags.mkdir()
    (dags / name).write_text(
        "# Airflow DAGs from pipeline specs\nfrom airflow_mlops.factory import build_pipelines\n"
        f"globals().update(build_pipelines({str(specs)!r}))\n"
    )
    return dags


def test_the_churn_dags_have_their_tasks_and_schedules():
    report = parse_in_fresh_process(ROOT / "dags")
    assert report["errors"] == {}
    assert set(report["dags"]) == {"churn_features", "churn_training", "churn_monitoring", "churn_rollback"}
    assert report["dags"]["churn_training"] == [
        "build_training_set",
        "validate_training_set",
        "train_model",
        "challenger_gate",
        "infra_validation",
        "promote_champion",
    ]
    assert report["schedules"] == {  # data intervals: the run at D+1 00:00 processes the complete day D
        "churn_features": ["CronDataIntervalTimetable", "0 0 * * *"],
        "churn_training": ["CronDataIntervalTimetable", "0 0 * * 0"],
        "churn_monitoring": ["CronDataIntervalTimetable", "0 0 * * *"],
        "churn_rollback": ["NullTimetable", None],  # triggered by hand, with a form
    }
    assert report["dags"]["churn_rollback"] == ["plan_rollback", "rollback_champion"]


def test_bad_spec_is_an_import_error_naming_file_and_key(tmp_path):
    spec = tmp_path / "broken.yaml"
    spec.write_text(SPEC_PATH.read_text().replace("window_days: 21", "window_dayz: 21"))
    (tmp_path / "expectations").mkdir()
    report = parse_in_fresh_process(dag_file(tmp_path / "dags", "broken.py", spec))
    assert report["dags"] == {}
    [(path, error)] = report["errors"].items()
    assert path.endswith("broken.py")
    assert str(spec) in error and "training.window_dayz" in error and "window_days" in error


def test_one_dag_file_builds_every_pipeline_of_a_folder(tmp_path):
    from tests.test_spec import pipelines

    report = parse_in_fresh_process(dag_file(tmp_path / "dags", "pipelines.py", pipelines(tmp_path)))
    assert report["errors"] == {} and report["heavy"] == []
    assert sorted(report["dags"]) == sorted(f"{n}_{k}" for n in ("churn", "upsell") for k in KINDS)


def test_training_queue_routes_only_train_model(tmp_path):
    """training.queue moves train_model alone; every other task, and train_model without it, keeps
    Airflow's configured default queue (here "cpu", as a deployment might name it)."""
    specs = tmp_path / "pipelines"
    specs.mkdir()
    (specs / "gpu.yaml").write_text(
        SPEC_PATH.read_text()
        .replace("name: churn\n", "name: churn_gpu\n")
        .replace("../expectations/", f"{SPEC_PATH.parent.parent / 'expectations'}/")
        .replace("  infra_validation_rows: 20\n", "  infra_validation_rows: 20\n  queue: gpu\n")
    )
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "pipelines.py").write_text(
        "# Airflow DAGs from specs\nfrom airflow_mlops.factory import build_pipelines\n"
        f"globals().update(build_pipelines({str(SPEC_PATH)!r}))\n"
        f"globals().update(build_pipelines({str(specs / 'gpu.yaml')!r}))\n"
    )
    code = f"""
import json
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={str(dags)!r})
print(json.dumps({{f"{{d}}.{{t.task_id}}": t.queue for d in bag.dags for t in bag.dags[d].tasks}}))
"""
    env = {**os.environ, "AIRFLOW__OPERATORS__DEFAULT_QUEUE": "cpu"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    queues = json.loads(out.stdout.strip().splitlines()[-1])
    assert queues.pop("churn_gpu_training.train_model") == "gpu"
    assert queues["churn_training.train_model"] == "cpu" and len(queues) == 2 * 18 - 1
    assert set(queues.values()) == {"cpu"}


def test_a_search_runs_its_trials_as_mapped_tasks_round_by_round_on_their_queue(tmp_path):
    from airflow_mlops.factory import build_pipelines
    from tests.conftest import spec_variant

    training = {
        "model": {"trainer": "sklearn_gradient_boosting", "params": {"max_iter": 100}},
        "search": {"space": {"learning_rate": {"type": "float", "low": 0.01, "high": 0.3}}, "trials": 5,
                   "parallel": 2, "queue": "trials"},
    }  # fmt: skip
    dag = build_pipelines(spec_variant(tmp_path, "searching", training=training))["churn_training"]
    rounds = [(f"search.plan_round_{n}", f"search.trials_round_{n}") for n in (1, 2, 3)]
    for number, (plan, trials) in enumerate(rounds):
        assert dag.task_dict[trials].upstream_task_ids == {plan, "build_training_set"}
        assert dag.task_dict[trials].queue == "trials" and dag.task_dict[plan].queue != "trials"
        before = {t for _, t in rounds[:number]} or {"validate_training_set"}  # round 1: after the gate
        assert dag.task_dict[plan].upstream_task_ids == before | {"build_training_set"}
    assert type(dag.task_dict["search.trials_round_1"]).__name__ == "MappedOperator"
    assert dag.task_dict["search.pick_best"].upstream_task_ids == {t for _, t in rounds}
    assert "search.pick_best" in dag.task_dict["train_model"].upstream_task_ids


def test_every_task_rides_out_an_outage_and_cannot_hang_a_worker():
    """Retries with backoff for about seven minutes (an MLflow restart), and a timeout on every task."""
    from datetime import timedelta

    from airflow_mlops.factory import build_pipelines

    for dag in build_pipelines(SPEC_PATH).values():
        for task in dag.tasks:
            assert task.retries >= 3 and task.retry_exponential_backoff, (dag.dag_id, task.task_id)
            assert task.execution_timeout is not None, (dag.dag_id, task.task_id)
            total = sum((task.retry_delay * 2**n for n in range(task.retries)), timedelta())
            assert total >= timedelta(minutes=5), (dag.dag_id, task.task_id, total)
