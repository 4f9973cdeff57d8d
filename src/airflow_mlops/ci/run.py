"""The small-data run of ``airflow-mlops ci``: every pipeline of a project, end to end under ``dag.test``
on a throwaway embedded stack (SQLite, a local lake), then checks of the model it trained.

Run as ``python -m airflow_mlops.ci.run PROJECT RESULT_JSON SPEC...`` in a fresh interpreter, because
Airflow reads its configuration (here: the throwaway stack's) once, on first import.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from airflow_mlops.ci.report import Check

if TYPE_CHECKING:
    from airflow_mlops.spec import PipelineSpec
    from airflow_mlops.steps.registry import MlflowTarget
    from airflow_mlops.storage import Storage


def same(a: float, b: float) -> bool:
    """Equal metrics, to rounding: relative, as a regression's metrics are in the label's units."""
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


class RunFailed(Exception):
    """A stage of the run did not do what it must; the message says what, and where to look."""


def ci_variant(spec: PipelineSpec, folder: Path) -> Path:
    """The spec as the run uses it: no alerts (a CI run must not page anyone) and no waiting for a
    triggered training run (``dag.test`` has no scheduler to run it). The rest, thresholds included, as is."""
    raw = spec.model_dump(mode="json", exclude={"alerts"})
    raw["monitoring"]["wait_for_training"] = False
    path = folder / f"{spec.name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def at_midnight(ds: date) -> datetime:
    return datetime.combine(ds, datetime.min.time(), UTC)


def states_of(dagrun: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dagrun.get_task_instances()}


def failed(states: dict[str, str], errors: dict[str, str]) -> str:
    """What went wrong in a DAG run: each failed task's error first, then the tasks it held back."""
    causes = [f"{task} failed: {error}" for task, error in errors.items() if states.get(task) == "failed"]
    others = Counter(
        state for task, state in states.items() if state not in ("success", "skipped") and task not in errors
    )
    return "; ".join(causes + [f"{count} more {state}" for state, count in sorted(others.items())])


def record_errors(task: Any, errors: dict[str, str]) -> None:
    """Keep the error a task fails with (its failure callback gets the exception) for the check's detail,
    beside the task's own callbacks (a spec's alerts)."""

    def record(context: Any) -> None:
        exception = context.get("exception")
        errors.setdefault(context["ti"].task_id, f"{type(exception).__name__}: {exception}" if exception else "")

    callbacks = task.on_failure_callback
    task.on_failure_callback = [
        *(callbacks if isinstance(callbacks, list) else [callbacks] if callbacks else []),
        record,
    ]


class PipelineRun:
    """One pipeline through features (every sample day), training (as of the last day) and monitoring
    (the last day), then the checks on its model. Each stage is a :class:`Check` of the pipeline."""

    def __init__(self, spec: PipelineSpec, variant: Path, project: Path, lake: Path, target: MlflowTarget) -> None:
        from airflow_mlops.factory import build_pipelines
        from airflow_mlops.storage import LocalStorage

        self.spec, self.project, self.lake, self.target = spec, project, lake, target
        self.storage: Storage = LocalStorage(lake)
        self.dags = build_pipelines(variant)
        self.errors: dict[str, str] = {}  # task id: the error it failed with
        for dag in self.dags.values():  # a task that fails here fails CI at once: no outage to ride out
            for task in dag.tasks:
                task.retries = 0
                record_errors(task, self.errors)
        self.days: list[date] = []
        self.checks: list[Check] = []
        self.champion: Any = None  # the registered version training promoted

    def check(self, name: str, step: Callable[[], str]) -> bool:
        started = time.monotonic()
        try:
            detail, ok = step(), True
        except Exception as exc:  # a failed stage is a failed check, reported; the next pipeline still runs
            detail, ok = f"{type(exc).__name__}: {exc}" if not isinstance(exc, RunFailed) else str(exc), False
        self.checks.append(Check(self.spec.name, name, ok, detail, time.monotonic() - started))
        return ok

    def run(self) -> list[Check]:
        stages = [
            ("sample", self.sample),
            ("features", self.features),
            ("training", self.training),
            ("monitoring", self.monitoring),
            ("model beats a constant predictor", self.converges),
            ("same seed, same metrics", self.reproducible),
            ("predictions finite and in range", self.predictions),
        ]
        for index, (name, step) in enumerate(stages):
            if not self.check(name, step):
                for skipped, _ in stages[index + 1 :]:
                    self.checks.append(Check(self.spec.name, skipped, False, f"not run: {name} failed", 0.0))
                break
        return self.checks

    def sample(self) -> str:
        from airflow_mlops.ci.sample import stage

        self.days, origin = stage(self.spec, self.project, self.lake, self.spec.start_date)
        training, held_out = self.spec.training, [f"training.holdout_days={self.spec.training.holdout_days}"]
        if training.search:
            held_out.append(f"training.search.validation_days={training.search.validation_days}")
        held_out_days = training.holdout_days + (training.search.validation_days if training.search else 0)
        if len(self.days) <= held_out_days:
            raise RunFailed(
                f"{len(self.days)} sample days cannot train with {' and '.join(held_out)}: keep at least "
                f"{held_out_days + 2} days"
            )
        return f"{len(self.days)} days, {self.days[0]} to {self.days[-1]}: {origin}"

    def features(self) -> str:
        from airflow_mlops import keys

        dag = self.dags[self.spec.dag_id("features")]
        for ds in self.days:
            states = states_of(dag.test(logical_date=at_midnight(ds)))
            if states.get("validate_raw") == "failed":
                results = self.storage.files(keys.validation_results(self.spec, "raw"), ".json")
                blocked = [json.loads(self.storage.read_bytes(k)) for k in results if f"date={ds}" in k]
                reasons = "; ".join(f for r in blocked for f in r.get("blocking_failures", []))
                raise RunFailed(f"the raw data gate blocked {ds}: {reasons or 'see the log'}")
            if failed(states, self.errors):
                raise RunFailed(f"{dag.dag_id} on {ds}: {failed(states, self.errors)}")
        offline = len(self.storage.files(keys.offline_prefix(self.spec), ".parquet"))
        return f"{len(self.days)} days passed the raw gate and were published ({offline} offline partitions)"

    def training(self) -> str:
        from airflow_mlops.steps.registry import champion_version

        dag = self.dags[self.spec.dag_id("training")]
        states = states_of(dag.test(logical_date=None, run_conf={"as_of": str(self.days[-1]), "reason": "ci"}))
        if failed(states, self.errors):
            raise RunFailed(f"{dag.dag_id} as of {self.days[-1]}: {failed(states, self.errors)}")
        name = self.spec.registered_model_name
        champion = champion_version(self.target, name)
        if states.get("promote_champion") != "success" or champion is None:
            versions = self.target.client().search_model_versions(f"name = '{name}'")
            reasons = [v.tags.get("decision_reason", "") for v in versions]
            raise RunFailed(f"no model passed the gates: {'; '.join(r for r in reasons if r) or states}")
        self.champion = champion
        metric = self.spec.training.primary_metric
        value = self.holdout_metrics[metric]
        return (
            f"training set gate passed; {self.searched()}{name} v{champion.version} registered, {metric} {value:.3f} "
            "on the holdout, passed the challenger gate, loaded and scored in a fresh interpreter (infra "
            "validation), @champion"
        )

    def searched(self) -> str:
        """What the champion's hyperparameter search found, from the search's MLflow run."""
        from airflow_mlops.contracts import Tag

        if Tag.SEARCH_RUN not in self.champion.tags:
            return ""
        search = self.target.client().get_run(self.champion.tags[Tag.SEARCH_RUN]).data
        metric, params = self.spec.training.primary_metric, search.params
        chosen = {k.removeprefix("best_"): v for k, v in params.items() if k.startswith("best_") and k != "best_trial"}
        shown = ", ".join(f"{k}={v}" for k, v in sorted(chosen.items()))
        best = search.metrics[f"best_validation_{metric}"]
        return (
            f"search: trial {params['best_trial']} the best of {params['trials']} ({shown}: {metric} {best:.3f} "
            "on the validation days); "
        )

    def monitoring(self) -> str:
        from airflow_mlops import keys

        dag = self.dags[self.spec.dag_id("monitoring")]
        ds = self.days[-1]
        states = states_of(dag.test(logical_date=at_midnight(ds)))
        if failed(states, self.errors):
            raise RunFailed(f"{dag.dag_id} on {ds}: {failed(states, self.errors)}")
        if not self.storage.exists(keys.report(self.spec, ds, keys.DRIFT_REPORT)):
            raise RunFailed(
                f"no drift report at {self.storage.location(keys.report(self.spec, ds, keys.DRIFT_REPORT))}"
            )
        decision = json.loads(self.storage.read_bytes(keys.report(self.spec, ds, keys.DECISION)))
        verdict = ("retrain: " if decision["retrain"] else "no retraining: ") + (
            decision.get("why_not") or decision["reason"]
        )
        return f"{ds} scored; drift report written, drift share {decision['drift_share']:.2f}; decision: {verdict}"

    @cached_property
    def holdout_metrics(self) -> dict[str, float]:
        from airflow_mlops.contracts import holdout_metrics

        return holdout_metrics(self.target.client().get_run(self.champion.run_id).data.metrics)

    @cached_property
    def training_split(self) -> Any:
        from airflow_mlops import keys
        from airflow_mlops.contracts import Tag
        from airflow_mlops.steps import training
        from airflow_mlops.storage import read_parquet

        tags = self.champion.tags
        frame = read_parquet(self.storage, keys.training_set(self.spec, tags[Tag.AS_OF], tags[Tag.DATA_FINGERPRINT]))
        return training.time_split(frame, self.spec.data.timestamp_column, self.spec.training.holdout_days)

    def converges(self) -> str:
        import numpy as np

        from airflow_mlops import task_types

        split, data = self.training_split, self.spec.data
        train = task_types.label_values(data, split.train[data.label_column])
        y = task_types.label_values(data, split.holdout[data.label_column])
        constant = task_types.constant_scores(data, train, len(y))
        metric = self.spec.training.primary_metric
        baseline = task_types.metrics(data, y, constant)[metric]
        value = self.holdout_metrics[metric]
        shown = ", ".join(f"{v:.2f}" for v in np.atleast_1d(constant[0]))
        comparison = f"{metric} {value:.3f} on the holdout, {baseline:.3f} for a constant predictor ({shown})"
        if not task_types.better(metric, value, baseline):
            raise RunFailed(f"the model learns nothing: {comparison}")
        return comparison

    def reproducible(self) -> str:
        import mlflow

        from airflow_mlops.spec import ModelSpec
        from airflow_mlops.steps import training

        split = self.training_split
        self.target.client()  # points mlflow's artifact API at the stack
        trained = mlflow.artifacts.load_dict(f"runs:/{self.champion.run_id}/{training.TRAINED_MODEL}")
        model = ModelSpec.model_validate(trained)  # the spec's, or as its search tuned it
        data = self.spec.data
        runs = [training.evaluate(training.fit(model, data, split.train), split.holdout, data) for _ in range(2)]
        registered = self.holdout_metrics
        differ = {
            m: (registered[m], runs[0][m], runs[1][m])
            for m in runs[0]
            if not (same(runs[0][m], runs[1][m]) and same(runs[0][m], registered.get(m, float("nan"))))
        }
        if differ:
            raise RunFailed(
                "the same data and params gave other metrics (registered, refit, refit): "
                + ", ".join(f"{m} {v}" for m, v in differ.items())
                + ": seed the trainer (e.g. random_state) so a model can be rebuilt"
            )
        return f"refitted twice: {', '.join(f'{m} {v:.4f}' for m, v in runs[0].items())}, as registered"

    def predictions(self) -> str:
        from airflow_mlops import keys, task_types
        from airflow_mlops.storage import read_parquet

        key = keys.predictions(self.spec, self.days[-1])
        scores = task_types.stored_scores(self.spec.data, read_parquet(self.storage, key))
        problem = "no scores" if not len(scores) else task_types.scores_problem(self.spec.data, scores)
        if problem:
            raise RunFailed(f"{self.storage.location(key)}: {problem}")
        return f"{len(scores)} scores in [{scores.min():.3f}, {scores.max():.3f}]"


@contextmanager
def throwaway_stack(project: Path) -> Iterator[Path]:
    """An embedded stack in a temporary folder, its Airflow database created; removed afterwards."""
    from airflow_mlops.dev.embedded import embedded_env

    with tempfile.TemporaryDirectory(prefix="airflow-mlops-ci-") as folder:
        home = Path(folder)
        os.environ.update(embedded_env(home, project=project, api_port=18690))
        os.environ.update(GX_ANALYTICS_ENABLED="false", MLFLOW_DISABLE_TELEMETRY="true")
        # only the throwaway stack's connections: never a secrets backend or config file of a real Airflow
        os.environ.update(AIRFLOW__SECRETS__BACKEND="", AIRFLOW__WORKERS__SECRETS_BACKEND="")
        os.environ.pop("AIRFLOW_CONFIG", None)
        from airflow.utils import db

        db.initdb()
        yield home


def main(argv: list[str]) -> int:
    project, result, *spec_paths = (Path(a) for a in argv)
    with throwaway_stack(project) as home:
        from airflow_mlops.hooks import MlflowHook
        from airflow_mlops.spec import load_spec

        target = MlflowHook(MlflowHook.default_conn_name).get_conn()
        checks: list[Check] = []
        for path in spec_paths:
            spec = load_spec(path)
            variant = ci_variant(spec, home)
            checks += PipelineRun(spec, variant, project, home / "data", target).run()
    result.write_text(json.dumps([c.as_dict() for c in checks]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
