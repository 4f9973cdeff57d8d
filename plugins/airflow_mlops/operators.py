"""Airflow operators: thin adapters that resolve connections and dates, call a pure step from
:mod:`airflow_mlops.steps`, and return a small summary as XCom (keys, URIs, counts; never frames).

Heavy libraries (pandas, mlflow, feast, great_expectations, evidently, sklearn, torch) are imported
inside ``execute`` only, so DAG files that use these operators parse in milliseconds.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import date
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import BaseBranchOperator, BaseOperator, BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from airflow_mlops import connections
from airflow_mlops.links import (
    ChampionVersionLink,
    DriftReportLink,
    FeatureViewLink,
    MlflowRunLink,
    ModelVersionLink,
    ValidationResultLink,
)
from airflow_mlops.spec import PipelineSpec, SpecError, load_spec

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlops.steps.features import FeastTarget
    from airflow_mlops.steps.registry import MlflowTarget
    from airflow_mlops.storage import Storage


def run_date(context: Context, explicit: str | None = None) -> date:
    """The date a run is about: an explicit ``as_of``, else the logical date, else when it was asked to run."""
    if explicit:
        try:
            return date.fromisoformat(str(explicit)[:10])
        except ValueError:
            raise AirflowFailException(f"as_of must be a date (YYYY-MM-DD), got {explicit!r}") from None
    moment = context.get("logical_date") or context["dag_run"].run_after
    return moment.date()


@contextmanager
def bad_data_fails_fast() -> Iterator[None]:
    """Bad data or a bad spec will not get better on retry: fail the task for good, with the message."""
    from airflow_mlops.storage import DataError

    try:
        yield
    except (DataError, SpecError) as exc:
        raise AirflowFailException(str(exc)) from exc


class PipelineOperator(BaseOperator):
    """Base for every step operator: the spec file and the connections it runs against."""

    template_fields: Collection[str] = ("spec_path",)
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        spec_path: str,
        storage_conn_id: str = connections.STORAGE_CONN_ID,
        mlflow_conn_id: str = connections.MLFLOW_CONN_ID,
        feast_conn_id: str = connections.FEAST_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.spec_path = spec_path
        self.storage_conn_id = storage_conn_id
        self.mlflow_conn_id = mlflow_conn_id
        self.feast_conn_id = feast_conn_id

    @cached_property
    def spec(self) -> PipelineSpec:
        return load_spec(self.spec_path)

    @cached_property
    def storage(self) -> Storage:
        return connections.open_lake(self.storage_conn_id)

    @cached_property
    def mlflow(self) -> MlflowTarget:
        from airflow_mlops.steps.registry import MlflowTarget

        return MlflowTarget(**connections.mlflow_settings(self.mlflow_conn_id))  # type: ignore[arg-type]

    @cached_property
    def feast(self) -> FeastTarget:
        from airflow_mlops.steps.features import FeastTarget

        return FeastTarget(connections.feast_settings(self.feast_conn_id))

    def execute(self, context: Context) -> Any:
        with bad_data_fails_fast():
            return self.run(context)

    def run(self, context: Context) -> Any:
        raise NotImplementedError


class DailyOperator(PipelineOperator):
    """A step about one daily partition: ``ds`` (templated, the run's date by default)."""

    template_fields = (*PipelineOperator.template_fields, "ds")

    def __init__(self, *, ds: str = "{{ ds }}", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ds = ds

    @property
    def day(self) -> date:
        return date.fromisoformat(self.ds)


class PartitionSensor(DailyOperator, BaseSensorOperator):
    """Waits for the day's partition: ``raw`` as it lands, or ``features`` once validated and published.

    A quarantined day never gets features, so waiting for it skips instead of timing out.
    """

    def __init__(self, *, dataset: Literal["raw", "features"], **kwargs: Any) -> None:
        kwargs.setdefault("mode", "reschedule")
        kwargs.setdefault("poke_interval", 60)
        kwargs.setdefault("timeout", 6 * 3600)
        super().__init__(**kwargs)
        self.dataset = dataset

    def poke(self, context: Context) -> bool:
        from airflow_mlops.steps.features import offline_prefix, quarantine_prefix
        from airflow_mlops.storage import partition

        spec, storage = self.spec, self.storage
        key = partition(spec.data.raw_path if self.dataset == "raw" else offline_prefix(spec), self.ds)
        self.log.info("looking for parquet files in %s", storage.location(key))
        if storage.files(key, ".parquet"):
            return True
        if self.dataset == "features" and storage.exists(partition(quarantine_prefix(spec), self.ds)):
            raise AirflowSkipException(f"{self.ds} was quarantined by the validation gate: no features to use")
        return False

    def execute(self, context: Context) -> Any:
        with bad_data_fails_fast():
            return BaseSensorOperator.execute(self, context)


class ValidateDataOperator(DailyOperator):
    """GX gate. ``stage="raw"``: the day's landed partition, quarantined when blocked.
    ``stage="training"``: the training set built upstream (``source`` is its storage key)."""

    template_fields = (*DailyOperator.template_fields, "source")
    operator_extra_links = (ValidationResultLink(),)

    def __init__(self, *, stage: Literal["raw", "training"], source: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stage = stage
        self.source = source

    def run(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.steps.features import quarantine_prefix
        from airflow_mlops.steps.validation import ValidationFailed, validate_frame
        from airflow_mlops.storage import partition, read_partition

        spec, storage = self.spec, self.storage
        if self.stage == "raw":
            key = partition(spec.data.raw_path, self.ds)
            suite, columns = spec.features.raw_suite, spec.data.features
        else:
            if not self.source:
                raise AirflowFailException("training-set validation needs the training set key as source")
            key = self.source.rsplit("/", 1)[0]
            suite, columns = spec.training.training_suite, spec.data.features
        frame = read_partition(storage, key)
        report = validate_frame(frame, suite, columns, source=str(storage.location(key)))
        result_key = f"validation/{spec.name}/{self.stage}/{key.replace('/', '__')}.json"
        storage.write_bytes(result_key, report.to_json())
        summary = {**report.summary(), "result": str(storage.location(result_key)), "result_key": result_key}
        self.log.info("validation of %s: %s", key, summary)
        context["ti"].xcom_push(key="validation", value=summary)
        if report.passed:
            return summary
        if self.stage == "raw":
            target = partition(quarantine_prefix(spec), self.ds)
            storage.move(key, target)
            self.log.error("quarantined %s to %s", key, target)
        raise ValidationFailed(report)


class PublishFeaturesOperator(DailyOperator):
    """Validated partition -> offline store; then materialise the day (plus overlap) into the online store."""

    operator_extra_links = (FeatureViewLink(),)

    def run(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.steps import features
        from airflow_mlops.storage import partition, read_partition

        spec, storage, day = self.spec, self.storage, self.day
        frame = read_partition(storage, partition(spec.data.raw_path, day))
        key = features.write_offline(storage, spec, day, frame)
        store = self.feast.store()
        features.apply(store, spec, storage)
        window = features.materialize(store, storage, spec, day)
        summary = {"offline_partition": str(storage.location(key)), "rows": len(frame), **window}
        for outlet in self.outlets:
            context["outlet_events"][outlet].extra = {"ds": self.ds, "rows": len(frame)}
        return summary


class BuildTrainingSetOperator(PipelineOperator):
    """Point-in-time training set from Feast for the labels that had arrived by ``as_of``."""

    template_fields = (*PipelineOperator.template_fields, "as_of")

    def __init__(self, *, as_of: str | None = "{{ params.as_of or '' }}", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.as_of = as_of

    def run(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.steps import features
        from airflow_mlops.steps.registry import fingerprint

        spec, storage, as_of = self.spec, self.storage, run_date(context, self.as_of)
        entities = features.training_entities(storage, spec, as_of)
        frame = features.point_in_time_training_set(self.feast.store(), spec, entities)
        key = f"training_sets/{spec.name}/as_of={as_of.isoformat()}/training_set.parquet"
        storage.write_parquet(key, frame)
        return {
            "key": key,
            "as_of": as_of.isoformat(),
            "rows": len(frame),
            "labels": len(entities),
            "fingerprint": fingerprint(frame),
            "label_rate": round(float(frame[spec.data.label_column].mean()), 4) if len(frame) else None,
        }


class TrainModelOperator(PipelineOperator):
    """Fit on all but the last ``holdout_days``, score the holdout, log everything to MLflow, register."""

    template_fields = (*PipelineOperator.template_fields, "training_set", "validation")
    operator_extra_links = (MlflowRunLink(), ModelVersionLink())

    def __init__(self, *, training_set: Any, validation: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.training_set = training_set
        self.validation = validation

    def run(self, context: Context) -> dict[str, Any]:
        from airflow_mlops import __version__
        from airflow_mlops.steps import registry, training
        from airflow_mlops.storage import read_parquet

        spec, info = self.spec, self.training_set
        frame = read_parquet(self.storage, info["key"])
        split = training.time_split(frame, spec.data.timestamp_column, spec.training.holdout_days)
        model = training.fit(spec.training.model, spec.data, split.train)
        metrics = training.evaluate(model, split.holdout, spec.data)
        params = context["params"]
        dag_run = context["dag_run"]
        trigger = params.get("reason") or getattr(dag_run.run_type, "value", str(dag_run.run_type))
        tags = {
            "run_name": f"{spec.name}-{info['as_of']}",
            "pipeline": spec.name,
            "trigger": trigger,
            "logical_date": info["as_of"],
            "airflow_dag_id": dag_run.dag_id,
            "airflow_run_id": dag_run.run_id,
            "code_version": __version__,
            "data_fingerprint": info["fingerprint"],
            "training_set": str(self.storage.location(info["key"])),
            "drift_report": str(params.get("report") or ""),
            "drifted_columns": ",".join(params.get("drifted_columns") or []),
            "trainer": spec.training.model.trainer,
        }
        candidate = registry.log_and_register(
            self.mlflow,
            experiment=spec.name,
            model_name=spec.registered_model_name,
            model=model,
            metrics=metrics,
            params={
                "trainer": spec.training.model.trainer,
                **spec.training.model.params,
                "window_days": spec.training.window_days,
                "holdout_days": spec.training.holdout_days,
                "train_rows": len(split.train),
                "holdout_rows": len(split.holdout),
                "holdout_start": split.holdout_start.date().isoformat(),
            },
            tags=tags,
            training_key=f"{info['as_of']}:{info['fingerprint']}:{spec.training.model.trainer}",
            input_example=split.holdout[spec.data.feature_names].head(5),
            artifacts={
                "validation/training_set.json": self.validation or {},
                "spec.json": spec.model_dump(mode="json"),
            },
        )
        self.log.info("candidate %s: %s", candidate.model_uri, candidate.metrics)
        return {**candidate.summary(), "training_set": info["key"]}


class ChallengerGateOperator(PipelineOperator, BaseBranchOperator):
    """Challenger vs champion on the challenger's holdout, with MLflow ``MetricThreshold`` s.

    Continues to ``promote_to`` when the challenger wins; otherwise tags it rejected and skips on.
    """

    template_fields = (*PipelineOperator.template_fields, "candidate")

    def __init__(self, *, candidate: Any, promote_to: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.candidate = candidate
        self.promote_to = promote_to

    def choose_branch(self, context: Context) -> list[str]:
        import mlflow

        from airflow_mlops.steps import registry, training
        from airflow_mlops.storage import read_parquet

        spec, candidate = self.spec, self.candidate
        name = spec.registered_model_name
        champion = registry.champion_version(self.mlflow, name)
        champion_metrics = None
        if champion is not None and str(champion.version) != candidate["version"]:
            frame = read_parquet(self.storage, candidate["training_set"])
            holdout = training.time_split(frame, spec.data.timestamp_column, spec.training.holdout_days).holdout
            model = mlflow.sklearn.load_model(f"models:/{name}/{champion.version}")
            champion_metrics = training.evaluate(model, holdout, spec.data)
        thresholds = spec.training.thresholds
        decision = registry.gate(
            thresholds,
            candidate["metrics"],
            champion_metrics,
            str(champion.version) if champion_metrics is not None and champion is not None else None,
        )
        self.log.info("gate for v%s: %s", candidate["version"], decision.summary())
        context["ti"].xcom_push(key="decision", value=decision.summary())
        if decision.promote:
            return [self.promote_to]
        registry.reject(self.mlflow, name, candidate["version"], decision.reasons)
        return []

    def execute(self, context: Context) -> Any:
        with bad_data_fails_fast():
            return BaseBranchOperator.execute(self, context)


class InfraValidationOperator(PipelineOperator):
    """Load the registered version as pyfunc in a fresh process and score sample rows."""

    template_fields = (*PipelineOperator.template_fields, "candidate")

    def __init__(self, *, candidate: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.candidate = candidate

    def run(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.steps import registry
        from airflow_mlops.storage import read_parquet

        spec = self.spec
        frame = read_parquet(self.storage, self.candidate["training_set"])
        sample = frame[spec.data.feature_names].tail(spec.training.infra_validation_rows)
        try:
            return registry.infra_validate(self.mlflow, self.candidate["model_uri"], sample)
        except RuntimeError as exc:
            registry.reject(self.mlflow, spec.registered_model_name, self.candidate["version"], [str(exc)])
            raise AirflowFailException(str(exc)) from exc


class PromoteModelOperator(PipelineOperator):
    """Move ``champion`` to the validated challenger; the old champion keeps ``previous``."""

    template_fields = (*PipelineOperator.template_fields, "candidate", "decision")
    operator_extra_links = (ChampionVersionLink(),)

    def __init__(self, *, candidate: Any, decision: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.candidate = candidate
        self.decision = decision

    def run(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.steps import registry

        name, version = self.spec.registered_model_name, self.candidate["version"]
        reason = "; ".join(self.decision["reasons"]) if self.decision else "promoted"
        previous = registry.promote(self.mlflow, name, version, reason)
        return {"model": name, "champion": version, "previous": previous}


class ScoreBatchOperator(DailyOperator):
    """Score the day's validated features with ``models:/<name>@champion``; replace the day's predictions."""

    def run(self, context: Context) -> dict[str, Any]:
        import mlflow

        from airflow_mlops.steps import features, monitoring, registry
        from airflow_mlops.storage import partition, read_partition

        spec, storage, day = self.spec, self.storage, self.day
        champion = registry.champion_version(self.mlflow, spec.registered_model_name)
        if champion is None:
            raise AirflowSkipException(f"no champion for {spec.registered_model_name} yet: nothing to monitor")
        frame = read_partition(storage, partition(features.offline_prefix(spec), day))
        model = mlflow.pyfunc.load_model(f"models:/{spec.registered_model_name}/{champion.version}")
        scored = monitoring.score(model, frame, spec, str(champion.version))
        key = monitoring.predictions_key(spec, day)
        storage.write_parquet(key, scored)
        return {
            "predictions": str(storage.location(key)),
            "rows": len(scored),
            "champion_version": str(champion.version),
            "mean_score": round(float(scored["score"].mean()), 4),
        }


class DetectDriftOperator(DailyOperator):
    """Drift of the day's features against the champion's training data (its profile, built once per
    champion), with Evidently's HTML report of the same verdicts."""

    template_fields = (*DailyOperator.template_fields, "scoring")
    operator_extra_links = (DriftReportLink(),)

    def __init__(self, *, scoring: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scoring = scoring

    def run(self, context: Context) -> dict[str, Any]:
        import json

        from airflow_mlops.steps import drift, features
        from airflow_mlops.storage import partition, read_parquet, read_partition

        spec, storage, day = self.spec, self.storage, self.day
        version = self.scoring["champion_version"]
        profile_key = f"{spec.monitoring.reports_path}/reference/version={version}"
        profile = drift.ReferenceProfile.load(storage, profile_key)
        if profile is None:  # first drift run of this champion: summarise its training set once
            reference_path = (
                self.mlflow.client().get_model_version(spec.registered_model_name, version).tags.get("training_set")
            )
            if not reference_path:
                raise AirflowFailException(f"champion v{version} has no 'training_set' tag: no drift reference")
            profile = drift.build_profile(read_parquet(storage, storage.key_of(reference_path)), spec.data)
            profile.save(storage, profile_key)
        current = read_partition(storage, partition(features.offline_prefix(spec), day))
        result = drift.compare(profile, current, spec.data, spec.monitoring.drift.max_drifted_share)
        snapshot = drift.render_report(profile, current, result, spec.data)
        base = f"{partition(spec.monitoring.reports_path, day)}"
        storage.write_bytes(f"{base}/drift.html", snapshot.get_html_str(as_iframe=False).encode())
        storage.write_bytes(f"{base}/drift.json", json.dumps(result.to_dict(), indent=2).encode())
        summary = {
            **result.summary(),
            "champion_version": version,
            "report": str(storage.location(f"{base}/drift.html")),
            "report_key": f"{base}/drift.html",
            "report_json": str(storage.location(f"{base}/drift.json")),
        }
        self.log.info("drift on %s: %s", self.ds, summary)
        return summary


class PerformanceReportOperator(DailyOperator):
    """Champion metrics on the predictions whose labels have arrived; ``None`` until there are some."""

    def run(self, context: Context) -> dict[str, Any] | None:
        import json

        from airflow_mlops.steps import monitoring
        from airflow_mlops.storage import partition

        spec, storage, day = self.spec, self.storage, self.day
        frame = monitoring.labelled_predictions(storage, spec, day)
        metrics = monitoring.performance(frame, spec.data.label_column)
        if metrics is None:
            self.log.info("no labelled predictions yet for %s", self.ds)
            return None
        key = f"{partition(spec.monitoring.reports_path, day)}/performance.json"
        storage.write_bytes(key, json.dumps(metrics, indent=2).encode())
        return {**metrics, "report": str(storage.location(key))}


class RetrainDecisionOperator(DailyOperator, BaseBranchOperator):
    """Apply the spec's drift policy; branch to the training trigger or skip it. Emits the monitoring
    Asset event either way, with the decision in its extra."""

    template_fields = (*DailyOperator.template_fields, "drift", "performance")

    def __init__(
        self, *, drift: Any, performance: Any, training_dag_id: str, trigger_task_id: str, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.drift = drift
        self.performance = performance
        self.training_dag_id = training_dag_id
        self.trigger_task_id = trigger_task_id

    def choose_branch(self, context: Context) -> list[str]:
        import json

        from airflow_mlops.steps import monitoring
        from airflow_mlops.storage import partition

        spec, day = self.spec, self.day
        active = context["ti"].get_dr_count(dag_id=self.training_dag_id, states=["queued", "running"])
        decision = monitoring.decide_retraining(
            spec.monitoring.drift,
            self.drift["share"],
            self.drift["drifted_columns"],
            self.performance or None,
            today=day,
            last_training=self._last_training(),
            training_active=active > 0,
        )
        if decision.retrain and not spec.monitoring.retrain_on_drift:
            decision.retrain, decision.why_not = False, "retrain_on_drift is off in the spec"
        summary = {
            **decision.summary(),
            "drift_share": self.drift["share"],
            "report": self.drift["report"],
            "performance": self.performance,
        }
        self.log.info("retraining decision for %s: %s", self.ds, summary)
        key = f"{partition(spec.monitoring.reports_path, day)}/decision.json"
        self.storage.write_bytes(key, json.dumps(summary, indent=2).encode())
        for outlet in self.outlets:
            context["outlet_events"][outlet].extra = {"ds": self.ds, **summary}
        context["ti"].xcom_push(key="decision", value=summary)
        return [self.trigger_task_id] if decision.retrain else []

    def _last_training(self) -> date | None:
        client = self.mlflow.client()
        name = self.spec.registered_model_name
        versions = client.search_model_versions(f"name = '{name}'")
        dates = [date.fromisoformat(v.tags["logical_date"]) for v in versions if "logical_date" in v.tags]
        return max(dates) if dates else None

    def execute(self, context: Context) -> Any:
        with bad_data_fails_fast():
            return BaseBranchOperator.execute(self, context)


class TriggerRetrainingOperator(TriggerDagRunOperator):
    """Airflow's own trigger, with the conf (reason, report, drifted columns, as_of) taken from the
    retraining decision at run time. One drift-triggered run per monitored day, however often it re-runs."""

    def __init__(self, *, decision_task_id: str, **kwargs: Any) -> None:
        kwargs.setdefault("trigger_run_id", "drift__{{ ds }}")
        kwargs.setdefault("skip_when_already_exists", True)
        super().__init__(**kwargs)
        self.decision_task_id = decision_task_id

    def execute(self, context: Context) -> Any:
        decision = context["ti"].xcom_pull(task_ids=self.decision_task_id, key="decision")
        self.conf = {
            "as_of": context["ds"],
            "reason": f"drift-triggered by {context['dag'].dag_id} on {context['ds']}: {decision['reason']}",
            "report": decision["report"],
            "drifted_columns": decision["drifted_columns"],
        }
        return super().execute(context)
