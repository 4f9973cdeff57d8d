"""The pipeline spec: one YAML file per ML use case, validated before any DAG is built.

A spec says *what* to train on and *which* gates to apply; *where* things live (MLflow, Feast stores,
the data lake) comes from Airflow connections, so the same spec runs embedded and in production.
Relative paths inside a spec are resolved against the spec file's folder.
"""

from __future__ import annotations

import hashlib
import re
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from airflow_mlops.task_types import ALL_METRICS, METRICS, PRIMARY_METRIC, TASK_TYPES, TaskType

# The built-in trainers and the task types each one learns.
TRAINERS: dict[str, tuple[TaskType, ...]] = {
    "sklearn_gradient_boosting": ("binary", "multiclass", "regression"),
    "sklearn_logistic_regression": ("binary", "multiclass"),
    "sklearn_ridge": ("regression",),
    "torch_mlp": ("binary", "multiclass", "regression"),
}
# Trainers of your own: ``package.module:function`` or a name in this entry point group (see
# airflow_mlops.steps.training.resolve_trainer for the contract).
TRAINER_ENTRY_POINTS = "airflow_mlops.trainers"
TRAINER_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")

Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=60)]
# A trainer's keyword argument (sklearn's ``C`` included)
ParamName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=100)]
# An executor queue as Celery and Airflow name them (task_instance.queue holds up to 256 characters).
QueueName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$", max_length=256)]
_SCHEDULE_PRESETS = ("@once", "@hourly", "@daily", "@weekly", "@monthly", "@yearly")


def _check_schedule(value: str) -> str:
    if value in _SCHEDULE_PRESETS or re.fullmatch(r"(\S+\s+){4}\S+", value.strip()):
        return value
    raise ValueError(f"must be a cron expression or one of {', '.join(_SCHEDULE_PRESETS)}")


Schedule = Annotated[str, AfterValidator(_check_schedule)]

# What a pipeline can alert on (spec ``alerts[].events``), in the order a day meets them.
ALERT_EVENTS = (
    "validation_blocked",  # bad data stopped a day (GX gate, contract, unreadable file): nothing published
    "task_failed",  # any other task failed after its retries
    "drift",  # monitoring found dataset or key-feature drift
    "champion_below_floor",  # the champion's metric on arrived labels is past its min_performance limit
    "challenger_rejected",  # a trained candidate lost at the challenger gate
    "promotion",  # @champion moved to a new version
    "rollback",  # @champion moved back (CLI or the rollback DAG)
    "shadow",  # a challenger that passed the gates is scored beside the champion (training.rollout: shadow)
)
AlertEvent = Literal[ALERT_EVENTS]  # type: ignore[valid-type]


class SpecError(ValueError):
    """A pipeline spec that cannot be used; the message names the file, the key and what is allowed."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


DTYPES = ("int64", "int32", "float64", "float32", "bool", "string", "category")
CATEGORICAL_DTYPES = frozenset({"string", "category", "bool"})


class Column(_Strict):
    """A feature and its type as it lands: ``category`` accepts pandas categoricals (stored and scored as
    strings, like ``string``); ``bool`` is a two-level categorical feature; the 32-bit types are kept
    32-bit in the feature store."""

    name: Name
    dtype: Literal[DTYPES]  # type: ignore[valid-type]
    max_null_fraction: float | None = Field(default=None, ge=0, le=1)
    """Overrides ``data.max_null_fraction`` for this column."""

    @property
    def categorical(self) -> bool:
        return self.dtype in CATEGORICAL_DTYPES


class DataSpec(_Strict):
    """Raw daily partitions as they land, relative to the storage root (``<path>/date=YYYY-MM-DD/``)."""

    raw_path: str
    labels_path: str
    entity_key: Name
    # binary: a 0/1 label, scored with the positive class's probability; multiclass: a label among
    # ``classes``, scored with a probability per class; regression: a numeric label
    task: Literal[TASK_TYPES] = "binary"  # type: ignore[valid-type]
    classes: list[StrictInt | StrictStr] = Field(default_factory=list)
    entity_key_dtype: Literal["int64", "string"] = "int64"  # Feast's INT64 or STRING join key
    timestamp_column: Name = "event_timestamp"
    label_column: Name
    features: list[Column] = Field(min_length=1)
    # Share of nulls a feature may have in a landed day or a training set before the gate blocks it.
    max_null_fraction: float = Field(default=0.05, ge=0, le=1)
    # A file producers write into a day's folder once every part of it has landed (e.g. "_SUCCESS", as
    # Spark and Hadoop do); the features DAG waits for it. Unset: the first parquet file starts the day.
    completion_marker: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

    @model_validator(mode="after")
    def _classes_fit_the_task(self) -> DataSpec:
        if self.task == "multiclass":
            shown = [str(c) for c in self.classes]
            if len(set(shown)) != len(shown) or len(shown) < 3:
                raise ValueError(
                    f"a multiclass task needs data.classes: its label's values, at least 3 and each once "
                    f"(got {self.classes}; two classes are a binary task, labelled 0 and 1)"
                )
        elif self.classes:
            raise ValueError(f"data.classes is for a multiclass task, not {self.task}")
        return self

    @field_validator("features")
    @classmethod
    def _unique(cls, features: list[Column]) -> list[Column]:
        names = [c.name for c in features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"feature names must be unique, repeated: {dupes}")
        return features

    @property
    def feature_names(self) -> list[str]:
        return [c.name for c in self.features]

    @property
    def numerical(self) -> list[str]:
        return [c.name for c in self.features if not c.categorical]

    @property
    def categorical(self) -> list[str]:
        return [c.name for c in self.features if c.categorical]


class FeaturePipelineSpec(_Strict):
    schedule: Schedule = "@daily"
    feature_view: Name
    raw_suite: Path
    # Late rows for the previous days are picked up by re-materialising this many days before ds.
    overlap_days: int = Field(default=1, ge=0, le=30)
    ttl_days: int = Field(default=30, ge=1)


class ModelSpec(_Strict):
    """A built-in trainer (``TRAINERS``), an import path ``package.module:function``, or the name of an
    entry point in the ``airflow_mlops.trainers`` group; ``params`` go to it. A trainer of your own is
    imported when ``train_model`` runs, never while DAGs are parsed."""

    trainer: str
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("trainer")
    @classmethod
    def _known(cls, trainer: str) -> str:
        if trainer in TRAINERS or TRAINER_PATH.fullmatch(trainer):
            return trainer
        from importlib.metadata import entry_points

        plugins = sorted(ep.name for ep in entry_points(group=TRAINER_ENTRY_POINTS))
        if trainer in plugins:
            return trainer
        installed = f"; installed: {', '.join(plugins)}" if plugins else ""
        raise ValueError(
            f"unknown trainer {trainer!r}: use one of {', '.join(TRAINERS)}, an import path "
            f"'package.module:function', or a name from the '{TRAINER_ENTRY_POINTS}' entry point group{installed}"
        )


class MetricThresholdSpec(_Strict):
    """Mirrors ``mlflow.models.MetricThreshold``: absolute floor plus change against the champion."""

    threshold: float | None = None
    min_absolute_change: float | None = Field(default=None, gt=0)
    min_relative_change: float | None = Field(default=None, gt=0, le=1)

    @model_validator(mode="after")
    def _not_empty(self) -> MetricThresholdSpec:
        if self.threshold is None and self.min_absolute_change is None and self.min_relative_change is None:
            raise ValueError("set at least one of threshold, min_absolute_change, min_relative_change")
        return self


class SearchParam(_Strict):
    """One hyperparameter's range, as Optuna's distributions take it: ``float`` or ``int`` from ``low`` to
    ``high`` (both included; ``log`` for a log scale, or a ``step``), or ``categorical`` among ``choices``."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(default=None, gt=0)
    choices: list[StrictBool | StrictInt | StrictFloat | StrictStr | None] = Field(default_factory=list)

    @model_validator(mode="after")
    def _fits_its_type(self) -> SearchParam:
        if self.type == "categorical":
            if len(self.choices) < 2 or self.low is not None or self.high is not None or self.log or self.step:
                raise ValueError("a categorical range has two or more 'choices' (and no low, high, log or step)")
            return self
        kind = f"a{'n' if self.type == 'int' else ''} {self.type} range"
        if self.choices:
            raise ValueError(f"{kind} takes low and high, not choices (use type: categorical)")
        if self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"{kind} needs low < high (got low {self.low}, high {self.high})")
        if self.type == "int" and not (self.low.is_integer() and self.high.is_integer()):
            raise ValueError(f"an int range needs whole low and high (got {self.low:g}, {self.high:g})")
        if self.log and self.step is not None:
            raise ValueError(f"{kind} is either on a log scale or in steps, not both")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0 (got {self.low:g})")
        if self.step is not None and self.step > self.high - self.low:
            raise ValueError(f"step {self.step:g} leaves one value between {self.low:g} and {self.high:g}")
        if self.type == "int" and self.step is not None and not self.step.is_integer():
            raise ValueError(f"an int range needs a whole step (got {self.step:g})")
        return self


class SearchSpec(_Strict):
    """Hyperparameter search with Optuna, as dynamically mapped Airflow tasks (one per trial, on
    ``queue``): ``trials`` in rounds of ``parallel`` trials, each round's suggestions made from the results of
    the rounds before (``tpe``; the first round explores at random) or all at random. Trials train on the rows
    before the last ``validation_days`` of the training part and are compared on those days by
    ``training.primary_metric``; the best trial's params (over ``training.model.params``) train the candidate,
    which is then gated on the holdout as without a search."""

    space: dict[ParamName, SearchParam] = Field(min_length=1)
    trials: int = Field(default=16, ge=2, le=500)
    parallel: int = Field(default=4, ge=1, le=64)
    sampler: Literal["tpe", "random"] = "tpe"
    seed: int = 0
    validation_days: int = Field(default=3, ge=1)
    # the trials' executor queue; None: training.queue's
    queue: QueueName | None = None

    @property
    def rounds(self) -> int:
        return -(-self.trials // self.parallel)


class RolloutSpec(_Strict):
    """How a challenger that passed the gates replaces the champion.

    ``direct``: at once. ``shadow``: it becomes ``@challenger``, is scored beside the champion for
    ``shadow_days``, then promoted if it passes ``training.thresholds`` against the champion on the labels
    that arrived for both (MLflow's ``MetricThreshold`` on live data), rejected otherwise.
    ``promote_when_champion_fails``: promote before the window ends when the champion's live metrics are
    past ``monitoring.drift.min_performance`` and the challenger beats it on the same labels (off: alert).
    """

    mode: Literal["direct", "shadow"] = "direct"
    shadow_days: int = Field(default=7, ge=1)
    # the least labels a verdict stands on; without them after twice the window, the challenger is rejected
    min_labelled_rows: int = Field(default=100, ge=1)
    promote_when_champion_fails: bool = False


class TrainingSpec(_Strict):
    schedule: Schedule | None = "@weekly"
    window_days: int = Field(default=28, ge=2)
    holdout_days: int = Field(default=4, ge=1)
    training_suite: Path
    # the metric models are compared on; by default the task's (roc_auc, rmse)
    primary_metric: Literal[ALL_METRICS] = "roc_auc"  # type: ignore[valid-type]
    model: ModelSpec
    thresholds: dict[Literal[ALL_METRICS], MetricThresholdSpec] = Field(min_length=1)  # type: ignore[valid-type]
    registered_model: Name | None = None
    # Queue of train_model, e.g. "gpu" for GPU workers; None keeps Airflow's [operators] default_queue.
    queue: QueueName | None = None
    infra_validation_rows: int = Field(default=20, ge=1)
    # How long train_model may run before Airflow stops it (every other task: one hour).
    timeout_minutes: int = Field(default=240, ge=1)
    rollout: RolloutSpec = RolloutSpec()
    search: SearchSpec | None = None

    @model_validator(mode="after")
    def _holdout_fits(self) -> TrainingSpec:
        if self.holdout_days >= self.window_days:
            raise ValueError(
                f"holdout_days ({self.holdout_days}) must be smaller than window_days ({self.window_days})"
            )
        if self.search is None:
            return self
        if self.search.validation_days + self.holdout_days >= self.window_days:
            raise ValueError(
                f"training.search.validation_days ({self.search.validation_days}) and training.holdout_days "
                f"({self.holdout_days}) must leave days to train on in training.window_days ({self.window_days})"
            )
        fixed = sorted(set(self.search.space) & set(self.model.params))
        if fixed:
            raise ValueError(
                f"training.search.space {', '.join(fixed)} also set in training.model.params: search a parameter "
                "or fix it, not both"
            )
        return self

    @property
    def trials_queue(self) -> str | None:
        return (self.search.queue if self.search else None) or self.queue


class DriftPolicySpec(_Strict):
    """When monitoring asks for a new model."""

    max_drifted_share: float = Field(default=0.5, gt=0, le=1)
    key_features: list[Name] = Field(default_factory=list)
    min_performance: dict[Literal[ALL_METRICS], float] = Field(default_factory=dict)  # type: ignore[valid-type]
    cooldown_days: int = Field(default=7, ge=0)


class MonitoringSpec(_Strict):
    schedule: Schedule = "@daily"
    predictions_path: str
    reports_path: str
    drift: DriftPolicySpec = DriftPolicySpec()
    # Labels of the last N days are joined with predictions for the performance report.
    performance_window_days: int = Field(default=7, ge=1)
    retrain_on_drift: bool = True
    # Hold the monitoring run until the training run it started has finished, so the next day is
    # scored by the model that training produced (and drift-triggered runs never pile up).
    wait_for_training: bool = True


class AlertSpec(_Strict):
    """One alert channel: an Airflow connection and the events it receives (by default all of them).

    ``smtp``: the provider's ``SmtpNotifier`` over an ``smtp`` connection, to ``to``.
    ``webhook``: the HTTP provider's ``HttpNotifier`` POSTs Slack-compatible JSON (``{"text": ...}`` plus
    the alert's fields) to the ``http`` connection's host and ``endpoint``.
    """

    channel: Literal["smtp", "webhook"]
    conn_id: str = Field(min_length=1)
    to: list[str] = Field(default_factory=list)
    from_email: str | None = None
    endpoint: str = ""
    events: list[AlertEvent] = Field(default_factory=lambda: list(ALERT_EVENTS), min_length=1)

    @model_validator(mode="after")
    def _recipients(self) -> AlertSpec:
        if self.channel == "smtp" and not self.to:
            raise ValueError("an smtp alert needs 'to': the recipients")
        if self.channel != "smtp" and (self.to or self.from_email):
            raise ValueError(f"'to' and 'from_email' are for smtp alerts, not {self.channel}")
        return self


class PipelineSpec(_Strict):
    name: Name
    description: str = ""
    owner: str = "mlops"
    start_date: date
    tags: list[str] = Field(default_factory=list)
    data: DataSpec
    features: FeaturePipelineSpec
    training: TrainingSpec
    monitoring: MonitoringSpec
    alerts: list[AlertSpec] = Field(default_factory=list)
    source: Path | None = Field(default=None, exclude=True)
    # sha256 of the spec file as read: which spec made a model version or a report (set by load_spec)
    digest: str | None = Field(default=None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _task_primary_metric(cls, raw: Any) -> Any:
        """``training.primary_metric`` defaults to the task's own (``roc_auc``, ``f1_macro``, ``rmse``); a
        section that is not a mapping is left for the field's own validation to name."""
        if not isinstance(raw, dict) or not isinstance(raw.get("data"), dict):
            return raw
        task, training = raw["data"].get("task", DataSpec.model_fields["task"].default), raw.get("training")
        if (
            isinstance(task, str)
            and task in PRIMARY_METRIC
            and isinstance(training, dict)
            and "primary_metric" not in training
        ):
            return {**raw, "training": {**training, "primary_metric": PRIMARY_METRIC[task]}}
        return raw

    @model_validator(mode="after")
    def _cross_refs(self) -> PipelineSpec:
        task, allowed = self.data.task, METRICS[self.data.task]
        used = {
            "training.primary_metric": [self.training.primary_metric],
            "training.thresholds": list(self.training.thresholds),
            "monitoring.drift.min_performance": list(self.monitoring.drift.min_performance),
        }
        for key, metrics in used.items():
            wrong = [m for m in metrics if m not in allowed]
            if wrong:
                what = (
                    f"{wrong[0]} is not a {task} metric"
                    if len(wrong) == 1
                    else f"{', '.join(wrong)} are not {task} metrics"
                )
                raise ValueError(f"{key}: {what} (data.task: {task}; use {', '.join(allowed)})")
        trainer = self.training.model.trainer
        if trainer in TRAINERS and task not in TRAINERS[trainer]:
            fits = [name for name, tasks in TRAINERS.items() if task in tasks]
            raise ValueError(
                f"training.model.trainer {trainer} does not learn {task} tasks (data.task: {task}; "
                f"use {', '.join(fits)})"
            )
        known = set(self.data.feature_names)
        unknown = [f for f in self.monitoring.drift.key_features if f not in known]
        if unknown:
            raise ValueError(f"monitoring.drift.key_features {unknown} are not features (allowed: {sorted(known)})")
        if self.training.primary_metric not in self.training.thresholds:
            primary = self.training.primary_metric
            default = (
                f" (the default for a {self.data.task} task)"
                if "primary_metric" not in self.training.model_fields_set
                else ""
            )
            raise ValueError(f"training.thresholds must include the primary_metric '{primary}'{default}")
        return self

    @property
    def registered_model_name(self) -> str:
        return self.training.registered_model or f"{self.name}_model"

    def dag_id(self, kind: Literal["features", "training", "monitoring", "rollback"]) -> str:
        return f"{self.name}_{kind}"


def _describe(error: Any) -> str:
    location = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        parent: Any = PipelineSpec
        for part in error["loc"][:-1]:
            parent = _submodel(parent, part)
        allowed = sorted(parent.model_fields) if parent is not None else []
        return f"unknown key '{location}' (allowed here: {', '.join(allowed)})"
    if error["type"] == "missing":
        return f"missing required key '{location}'"
    value = error.get("input")
    shown = f" (got {value!r})" if not isinstance(value, dict | list) else ""
    return f"'{location}': {error['msg']}{shown}"


def _submodel(model: Any, key: Any) -> Any:
    """The model found under ``key`` of ``model``; list indexes and dict keys keep the model they hold."""
    field = model.model_fields.get(key) if model is not None and not isinstance(key, int) else None
    if field is None:
        return model
    annotation = field.annotation
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return model


def parse_spec(raw: Any, source: Path) -> PipelineSpec:
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: a pipeline spec must be a mapping, got {type(raw).__name__}")
    try:
        spec = PipelineSpec.model_validate({**raw, "source": source})
    except ValidationError as exc:
        problems = "\n  ".join(_describe(e) for e in exc.errors())
        raise SpecError(f"{source}: invalid pipeline spec:\n  {problems}") from None
    base = source.parent
    return spec.model_copy(
        update={
            "features": spec.features.model_copy(update={"raw_suite": _resolve(base, spec.features.raw_suite)}),
            "training": spec.training.model_copy(
                update={"training_suite": _resolve(base, spec.training.training_suite)}
            ),
        }
    )


def _resolve(base: Path, path: Path) -> Path:
    return path if path.is_absolute() else (base / path).resolve()


def load_specs(folder: str | Path) -> list[PipelineSpec]:
    """Every spec (``*.yaml``, ``*.yml``) in ``folder``, checked to live side by side (:func:`check_apart`)."""
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    if not paths:
        raise SpecError(f"{folder}: no pipeline spec (*.yaml) in this folder")
    specs = [load_spec(path) for path in paths]
    check_apart(specs)
    return specs


def check_apart(specs: list[PipelineSpec]) -> None:
    """Pipelines that run on one stack must not write to each other's places: DAG ids (``name``), the
    MLflow registered model, the Feast feature view (one registry per stack), predictions and reports.
    Reading the same raw data or labels is fine. A :class:`SpecError` names both files and the key."""
    names = {
        "name": lambda s: s.name,
        "training.registered_model": lambda s: s.registered_model_name,
        "features.feature_view": lambda s: s.features.feature_view,
    }
    for key, name in names.items():
        seen: dict[str, PipelineSpec] = {}
        for spec in specs:
            value = name(spec)
            if value in seen:
                raise SpecError(
                    f"{spec.source} and {seen[value].source} share {key} {value!r}: pipelines on one stack "
                    "need their own (they would overwrite each other's)"
                )
            seen[value] = spec
    # the lake folders each pipeline writes (its predictions, a challenger's beside them, its reports):
    # never the same as, or inside, another pipeline's
    folders = [
        (spec, key, path.strip("/"))
        for spec in specs
        for key, path in (
            ("monitoring.predictions_path", spec.monitoring.predictions_path),
            ("monitoring.predictions_path", f"{spec.monitoring.predictions_path.rstrip('/')}_shadow"),
            ("monitoring.reports_path", spec.monitoring.reports_path),
        )
    ]
    for index, (spec, key, path) in enumerate(folders):
        for other, other_key, other_path in folders[index + 1 :]:
            if other is spec:
                continue
            if (key, path) == (other_key, other_path):
                clash = f"share {key} {path!r}"
            elif (
                path == other_path or f"{path}/".startswith(f"{other_path}/") or f"{other_path}/".startswith(f"{path}/")
            ):
                clash = f"overlap: {other_key} {other_path!r} and {key} {path!r}"
            else:
                continue
            raise SpecError(
                f"{other.source} and {spec.source} {clash}: pipelines on one stack need folders of their own "
                "(they would overwrite each other's)"
            )


def load_spec(path: str | Path) -> PipelineSpec:
    """Read and validate one spec file; every problem is raised as a :class:`SpecError`."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{source}: cannot read pipeline spec: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{source}: not valid YAML: {exc}") from None
    spec = parse_spec(raw, source)
    for suite in (spec.features.raw_suite, spec.training.training_suite):
        if not suite.is_file():
            raise SpecError(f"{source}: expectation suite file not found: {suite}")
    return spec.model_copy(update={"digest": hashlib.sha256(text.encode()).hexdigest()})
