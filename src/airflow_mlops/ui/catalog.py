"""What the monitoring page shows, read where the pipelines wrote it: the pipelines from Airflow's
serialized DAGs, versions and decisions from the MLflow registry, drift and validation from the data lake.

Storage keys that come from a URL are checked here, before storage is touched: a key must be a plain
relative path inside one of the folders the page serves.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from airflow_mlops import keys

if TYPE_CHECKING:
    from airflow_mlops.contracts import AliasMove
    from airflow_mlops.spec import PipelineSpec
    from airflow_mlops.steps.history import Day, Version
    from airflow_mlops.steps.registry import MlflowTarget
    from airflow_mlops.storage import Storage

log = logging.getLogger(__name__)

LATEST_VALIDATIONS = 6
FolderKind = Literal["reports", "validation"]


class BadKey(ValueError):
    """A storage key from a request that is not a plain relative path (``..``, absolute, backslashes)."""


@dataclass(frozen=True)
class Pipeline:
    """One spec and the DAGs built from it."""

    spec_path: str
    dag_ids: tuple[str, ...]
    spec: PipelineSpec | None = None
    error: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name if self.spec else self.spec_path

    def folder(self, kind: FolderKind) -> str | None:
        """The storage folder of this pipeline that the page serves files of this kind from."""
        if self.spec is None:
            return None
        return keys.reports_prefix(self.spec) if kind == "reports" else keys.validation_prefix(self.spec)

    def holds(self, key: str, kind: FolderKind) -> bool:
        folder = self.folder(kind)
        return folder is not None and key.startswith(f"{folder}/")


def mlops_dags() -> dict[str, str]:
    """``dag_id -> spec path`` of every active DAG tagged ``mlops``, from its serialized tasks' ``spec_path``."""
    from airflow.models.dag import DagModel, DagTag
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    found: dict[str, str] = {}
    with create_session() as session:
        query = (
            select(DagModel.dag_id)
            .join(DagTag, DagTag.dag_id == DagModel.dag_id)
            .where(DagTag.name == "mlops", DagModel.is_stale.is_(False))
        )
        for dag_id in session.scalars(query):
            dag = SerializedDagModel.get_dag(dag_id, session=session)
            paths = [path for t in (dag.tasks if dag else []) if (path := getattr(t, "spec_path", None))]
            if paths:
                found[dag_id] = str(paths[0])
    return found


def pipelines(dags: dict[str, str], readable: set[str]) -> list[Pipeline]:
    """The pipelines whose every DAG the user may read, by name; a spec that fails to load is kept with its error."""
    from airflow_mlops.spec import SpecError, load_spec

    by_spec: dict[str, list[str]] = defaultdict(list)
    for dag_id, spec_path in dags.items():
        by_spec[spec_path].append(dag_id)
    found = []
    for spec_path, dag_ids in by_spec.items():
        if not set(dag_ids) <= readable:
            continue
        try:
            found.append(Pipeline(spec_path, tuple(sorted(dag_ids)), spec=load_spec(spec_path)))
        except (SpecError, OSError) as exc:
            log.warning("cannot load pipeline spec %s: %s", spec_path, exc)
            found.append(Pipeline(spec_path, tuple(sorted(dag_ids)), error=str(exc)))
    return sorted(found, key=lambda p: p.name)


def check_key(key: str) -> str:
    """``key`` itself when it is a plain relative storage key; :class:`BadKey` naming the problem otherwise."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key or ":" in key.split("/")[0]:
        raise BadKey(f"{key!r} is not a relative storage key")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise BadKey(f"{key!r} has an empty, '.' or '..' path segment")
    return key


@dataclass(frozen=True)
class Validation:
    key: str
    stage: str
    suite: str
    source: str
    rows: int
    passed: bool
    blocking: list[str]
    warnings: list[str]


@dataclass(frozen=True)
class Overview:
    """Everything the page shows for one pipeline."""

    pipeline: Pipeline
    aliases: dict[str, str]  # alias -> version
    versions: list[Version]
    days: list[Day]
    drift_reports: dict[str, str]  # ds -> report key
    performance_reports: dict[str, str]  # ds -> report key
    validations: list[Validation]
    moves: list[AliasMove]  # the champion's audit trail, newest first


def validation(storage: Storage, key: str) -> Validation:
    result: dict[str, Any] = json.loads(storage.read_bytes(key))
    return Validation(
        key=key,
        stage=key.split("/")[2],
        suite=str(result.get("suite", "")),
        source=str(result.get("source", "")),
        rows=int(result.get("rows", 0)),
        passed=bool(result.get("passed")),
        blocking=[str(item) for item in result.get("blocking_failures", [])],
        warnings=[str(item) for item in result.get("warnings", [])],
    )


def overview(pipeline: Pipeline, storage: Storage, target: MlflowTarget) -> Overview:
    from airflow_mlops.steps import audit, history

    spec = pipeline.spec
    assert spec is not None, "overview of a pipeline whose spec did not load"
    versions = history.versions(target, spec)
    aliases = (
        {alias: str(v) for alias, v in target.client().get_registered_model(spec.registered_model_name).aliases.items()}
        if versions
        else {}
    )
    days = history.days(storage, spec, versions)
    drift_reports = report_keys(storage, spec, keys.DRIFT_REPORT)
    performance_reports = report_keys(storage, spec, keys.PERFORMANCE_REPORT)
    validations: list[Validation] = []
    for stage in ("raw", "training"):
        results = storage.files(keys.validation_results(spec, stage), ".json")[-LATEST_VALIDATIONS:]
        validations.extend(validation(storage, key) for key in reversed(results))
    moves = audit.trail(storage, spec)
    return Overview(pipeline, aliases, versions, days, drift_reports, performance_reports, validations, moves)


def report_keys(storage: Storage, spec: PipelineSpec, name: keys.ReportName) -> dict[str, str]:
    """``ds -> key`` of every day's report called ``name``."""
    return {keys.partition_day(key): key for key in storage.files(keys.reports_prefix(spec), f"/{name}")}
