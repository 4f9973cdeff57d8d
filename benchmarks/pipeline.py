"""The whole training pipeline on about 1M rows: the ``churn_training`` DAG through Airflow's scheduler
on the embedded stack, against the same steps run back to back in one plain Python process.

    python benchmarks/pipeline.py --customers 48000     # 21-day window x 48k labels = 1M rows

Both sides start from the same lake (offline features of every day, Feast definitions applied) and
register into MLflow stores of their own. Airflow's time is its DAG run's, from queued to finished
(scheduling, one process per task, XComs and the training set going through the lake included);
the plain run's is the same step functions' own, in one process: no scheduling, no task processes, no XComs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from datetime import date, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Row, measure, report, shape, table

from airflow_mlops.dev.demo import environment
from airflow_mlops.dev.embedded import embedded_env
from airflow_mlops.spec import load_spec

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SPEC = PROJECT_ROOT / "include" / "pipelines" / "churn.yaml"

API_PORT = 18970


def prepare(home: Path, customers: int) -> date:
    """Land raw data and labels, publish every day's offline features, apply the Feast definitions.
    Returns the ``as_of`` date whose training window is full."""
    sys.path.insert(0, str(PROJECT_ROOT / "include" / "demo"))
    import churn_data

    from airflow_mlops.hooks import FeastHook, LakeHook
    from airflow_mlops.keys import raw_partition
    from airflow_mlops.steps import features as feature_steps
    from airflow_mlops.storage import read_partition

    spec = load_spec(SPEC)
    days = spec.training.window_days + churn_data.Scenario.label_delay_days + 1
    scenario = churn_data.Scenario(
        start=spec.start_date, days=days, customers=customers, corrupt_day=None,
        covariate_shift_day=days, concept_shift_day=days,
    )  # fmt: skip
    with environment(embedded_env(home, project=PROJECT_ROOT, api_port=API_PORT)):
        lake = LakeHook().get_conn()
        root = Path(lake.uri.removeprefix("file://"))
        churn_data.write(scenario, root)
        for index in range(days):
            day = scenario.day(index)
            feature_steps.write_offline(lake, spec, day, read_partition(lake, raw_partition(spec, day)))
        feature_steps.apply(FeastHook().get_conn().store(), spec, lake)
    return scenario.day(days - 1)


def plain(home: Path, as_of: date) -> None:
    """The training DAG's steps in order, the same step functions its operators call, in this process and
    against a separate MLflow store: what the pipeline costs without Airflow around it."""
    with report() as out:
        from airflow_mlops.hooks import FeastHook, LakeHook
        from airflow_mlops.steps import features as feature_steps
        from airflow_mlops.steps import registry
        from airflow_mlops.steps import training as training_steps
        from airflow_mlops.steps.validation import validate_stored

        spec = load_spec(SPEC)
        with environment(embedded_env(home, project=PROJECT_ROOT, api_port=API_PORT)):
            lake = LakeHook().get_conn()
            store = FeastHook().get_conn().store()
        target = registry.MlflowTarget(
            tracking_uri=f"sqlite:///{home / 'plain-mlflow.db'}", artifact_location=(home / "plain-artifacts").as_uri()
        )
        training_set = feature_steps.build_training_set(store, lake, spec, as_of)
        checked, validation = validate_stored(lake, spec, "training", training_set["key"].rsplit("/", 1)[0])
        if not checked.passed:
            raise SystemExit(f"training set failed validation: {validation}")
        lineage = training_steps.Lineage(trigger="benchmark", dag_id="plain", run_id=f"plain-{as_of}", code_version="")
        candidate = training_steps.train_candidate(target, lake, spec, training_set, lineage, dict(validation))
        decision = registry.gate(spec.training.thresholds, candidate["metrics"], None)
        if not decision.promote:
            raise SystemExit(f"plain run's candidate was rejected: {decision.summary()}")
        registry.validate_infra(target, lake, spec, candidate)
        registry.promote(target, spec.registered_model_name, candidate["version"], "benchmark", gated_against=None)
        out.update(rows=training_set["rows"], metrics=candidate["metrics"])


def through_airflow(home: Path, as_of: date) -> dict[str, Any]:
    """Trigger ``churn_training`` for ``as_of`` on the embedded stack; its run's duration and metrics."""
    from airflow_mlops.contracts import holdout_metrics
    from airflow_mlops.dev.stack import running_stack, wait_for, wait_for_runs
    from airflow_mlops.hooks import MlflowHook
    from airflow_mlops.steps import registry

    spec = load_spec(SPEC)
    dag_id = spec.dag_id("training")
    env = {
        **embedded_env(home, project=PROJECT_ROOT, api_port=API_PORT),
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
    }
    with environment(env), running_stack(env, home) as api:
        wait_for(lambda: dag_id in api.dag_ids(), "the DAGs to be parsed", timeout=300)
        api.unpause(dag_id)
        api.trigger(dag_id, f"{as_of}T00:00:00Z", {"as_of": as_of.isoformat(), "reason": "benchmark"})
        (run,) = wait_for_runs(api, dag_id, 1, timeout=3600, progress=lambda line: None)
        if run["state"] != "success":
            raise RuntimeError(f"{dag_id} run {run['dag_run_id']} ended {run['state']}; logs under {home}/logs")
        target = MlflowHook().get_conn()
        champion = registry.champion_version(target, spec.registered_model_name)
        if champion is None:
            raise RuntimeError(f"{dag_id} succeeded but promoted no champion")
        metrics = target.client().get_run(champion.run_id).data.metrics
        params = target.client().get_run(champion.run_id).data.params
    seconds = (_moment(run["end_date"]) - _moment(run["queued_at"])).total_seconds()
    return {
        "seconds": seconds,
        "rows": int(params["train_rows"]) + int(params["holdout_rows"]),
        "metrics": holdout_metrics(metrics),
    }


def _moment(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def run(customers: int) -> list[Row]:
    home = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    try:
        as_of = prepare(home, customers)
        base = measure(Path(__file__), "plain", str(home), as_of.isoformat())
        ours = through_airflow(home, as_of)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    auc, base_auc = ours["metrics"]["roc_auc"], base["metrics"]["roc_auc"]
    same = "same" if ours["rows"] == base["rows"] and abs(auc - base_auc) < 1e-9 else "DIFFERENT"
    return [
        Row("training pipeline: Airflow vs plain Python", shape(ours["rows"], 9), ours["seconds"],
            None, base["seconds"], base["peak_mb"],
            f"{same} model: {ours['rows']} rows, holdout AUC {auc:.4f} vs {base_auc:.4f}"),
    ]  # fmt: skip


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "plain":
        plain(Path(sys.argv[2]), date.fromisoformat(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=48_000, help="rows per day (21-day window)")
    args = parser.parse_args()
    print(table(run(args.customers)))


if __name__ == "__main__":
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    main()
