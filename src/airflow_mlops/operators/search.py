"""The hyperparameter search's operators: a round's trials are planned by one task and run by as many
dynamically mapped tasks (``RunTrialOperator.partial(...).expand(trial=plan.output)``), so they spread over
the workers of their queue; the best one's params go to ``train_model``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_mlops.links import MlflowRunLink
from airflow_mlops.operators.base import PipelineOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlops.contracts import SearchRecord, TrialRecord, TrialResult


def trial_results(results: Any) -> list[TrialResult]:
    """The results of the rounds before, one sequence (a mapped task's results) per round, each read in one
    request (a slice; iterating would ask item by item until one is missing)."""
    return [dict(result) for round_results in results or () for result in round_results[:]]  # type: ignore[misc]


class PlanTrialsOperator(PipelineOperator):
    """Ask Optuna for round ``round_number``'s trials, told the ``results`` of the rounds before."""

    template_fields = (*PipelineOperator.template_fields, "training_set", "results")

    def __init__(self, *, training_set: Any, round_number: int, results: Any = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.training_set = training_set
        self.round_number = round_number
        self.results = results

    def run(self, context: Context) -> list[TrialRecord]:
        from airflow_mlops import __version__
        from airflow_mlops.steps import search

        done = trial_results(self.results)
        spec, number = self.spec, self.round_number
        trials = search.plan_round(self.mlflow, self.storage, spec, self.training_set, __version__, done, number)
        self.log.info("round %s: %s trials after %s done: %s", self.round_number, len(trials), len(done), trials)
        return trials


class RunTrialOperator(PipelineOperator):
    """Fit and score one trial on the validation days, as a run nested under the search's MLflow run."""

    template_fields = (*PipelineOperator.template_fields, "training_set", "trial")
    operator_extra_links = (MlflowRunLink(),)

    def __init__(self, *, training_set: Any, trial: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.training_set = training_set
        self.trial = trial

    def run(self, context: Context) -> TrialResult:
        from airflow_mlops.steps import search

        result = search.run_trial(self.mlflow, self.storage, self.spec, self.training_set, self.trial)
        self.log.info("trial %s %s: %s %s", result["number"], result["params"], result["metric"], result["value"])
        self.lineage.inputs.append(self.in_lake(self.training_set["key"]))
        return result


class PickBestOperator(PipelineOperator):
    """The best trial of every round, recorded on the search's MLflow run."""

    template_fields = (*PipelineOperator.template_fields, "results")
    operator_extra_links = (MlflowRunLink(),)

    def __init__(self, *, results: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.results = results

    def run(self, context: Context) -> SearchRecord:
        from airflow_mlops.steps import search

        record = search.pick_best(self.mlflow, self.spec, trial_results(self.results))
        self.log.info(
            "best of %s trials: %s %s with %s", record["trials"], record["metric"], record["value"], record["params"]
        )
        return record
