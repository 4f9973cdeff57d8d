"""Online predictions: an entity's latest features from Feast's online store, scored by ``@champion``.

The champion is resolved and loaded in the background (:meth:`OnlineScorer.refresh`), never on a
request: a request reads features and scores, nothing else. When the alias moves (a promotion, a
rollback) the next refresh loads the new version and swaps it in; while MLflow is unreachable the
loaded champion keeps serving. Scores are the same as batch scoring's for the same features: the same
model, fed the spec's feature columns in the spec's types.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from airflow_mlops import task_types
from airflow_mlops.contracts import CHAMPION

if TYPE_CHECKING:
    from airflow_mlops.spec import PipelineSpec
    from airflow_mlops.steps.registry import MlflowTarget

log = logging.getLogger(__name__)


class NoChampion(RuntimeError):
    """No ``@champion`` is loaded: the registered model has none yet, or it has not loaded so far."""


@dataclass(frozen=True)
class Champion:
    version: str
    model: Any  # the sklearn pipeline, without pyfunc's per-call schema checks


@dataclass(frozen=True)
class Scored:
    version: str
    scores: dict[Any, float]  # entity id -> score, in request order (multiclass: the likeliest class's probability)
    unknown: list[Any]  # ids with no features in the online store
    predicted: dict[Any, str] = field(default_factory=dict)  # multiclass: entity id -> the likeliest class


@dataclass
class OnlineScorer:
    spec: PipelineSpec
    store: Any  # feast.FeatureStore
    target: MlflowTarget
    champion: Champion | None = None
    last_check: float | None = None  # time.time() of the last successful look at the alias
    last_error: str | None = None

    def refresh(self) -> bool:
        """Look at ``@champion`` and load it if it moved; ``True`` when a new version was swapped in.
        An outage, or a version of another task, is logged and kept in ``last_error``; the loaded champion
        keeps serving."""
        from airflow_mlops.steps.registry import aliases, version_task
        from airflow_mlops.steps.training import load_model

        name = self.spec.registered_model_name
        try:
            version = aliases(self.target, name).get(CHAMPION)
            self.last_check, self.last_error = time.time(), None
            if version is None or (self.champion and self.champion.version == version):
                return False
            predicts, wanted = (
                version_task(self.target.client().get_model_version(name, version)),
                task_types.describe(self.spec.data),
            )
            if predicts != wanted:  # an alias moved by hand to a model of another task: keep what serves now
                raise ValueError(f"@champion v{version} predicts {predicts}, the spec says {wanted}: not loaded")
            model = load_model(f"models:/{name}/{version}", "sklearn")
        except Exception as exc:  # MLflow or the artifact store down: keep what serves now
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("cannot refresh @champion of %s: %s", name, self.last_error)
            return False
        previous, self.champion = self.champion, Champion(version, model)
        log.info("serving %s v%s (was %s)", name, version, f"v{previous.version}" if previous else "none")
        return True

    def watch(self, interval_s: float, stop: threading.Event) -> threading.Thread:
        """Refresh every ``interval_s`` in a daemon thread until ``stop`` is set."""

        def loop() -> None:
            while not stop.wait(interval_s):
                self.refresh()

        thread = threading.Thread(target=loop, name=f"champion-watch-{self.spec.name}", daemon=True)
        thread.start()
        return thread

    def features(self, ids: list[Any]) -> pd.DataFrame:
        """The online features of ``ids`` in the spec's column order and types (NaN where missing)."""
        from airflow_mlops.steps.features import feature_refs

        rows = [{self.spec.data.entity_key: i} for i in ids]
        found = self.store.get_online_features(features=feature_refs(self.spec), entity_rows=rows).to_dict()
        return pd.DataFrame(
            {
                column.name: pd.Series(found[column.name], dtype=object if column.categorical else "float64")
                for column in self.spec.data.features
            }
        )

    def score(self, ids: list[Any]) -> Scored:
        """Scores of the ids that have online features (an id with none is ``unknown``, not scored)."""
        champion = self.champion
        if champion is None:
            raise NoChampion(f"{self.spec.registered_model_name} has no @champion to serve yet")
        frame = self.features(ids)
        known = frame.notna().any(axis=1).to_numpy()
        scored_ids = [i for i, k in zip(ids, known, strict=True) if k]
        scores: dict[Any, float] = {}
        predicted: dict[Any, str] = {}
        if scored_ids:
            stored = task_types.score_frame(
                self.spec.data, task_types.scores(self.spec.data, champion.model, frame[known])
            )
            scores = dict(zip(scored_ids, stored["score"].tolist(), strict=True))
            if "prediction" in stored:
                predicted = dict(zip(scored_ids, stored["prediction"].tolist(), strict=True))
        unknown = [i for i, k in zip(ids, known, strict=True) if not k]
        return Scored(champion.version, scores, unknown, predicted)
