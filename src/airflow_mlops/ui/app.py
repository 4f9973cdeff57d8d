"""The monitoring page and its report endpoints: a FastAPI app that the Airflow API server mounts at
:data:`airflow_mlops.links.UI_PREFIX` (see :mod:`airflow_mlops.ui.plugin`).

Airflow mounts plugin apps without authentication, so every route depends on :func:`airflow_user`,
which is Airflow's own ``get_user`` (a JWT in the ``Authorization`` header, or the UI's ``_token``
cookie), and shows only pipelines whose DAGs the auth manager lets that user read. ``/metrics`` also
takes the scrape token of the ``mlops_metrics`` connection, for Prometheus (whose credentials do not
expire the way Airflow's JWTs do).
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Callable
from functools import cache
from pathlib import PurePosixPath
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from airflow_mlops.contracts import Tag
from airflow_mlops.hooks import FeastHook, LakeHook, MlflowHook
from airflow_mlops.steps.registry import MlflowTarget
from airflow_mlops.storage import Storage
from airflow_mlops.ui import catalog, pages
from airflow_mlops.ui.catalog import FolderKind, Pipeline

log = logging.getLogger(__name__)

app = FastAPI(title="airflow-mlops model monitoring", docs_url=None, redoc_url=None, openapi_url=None)
bearer = HTTPBearer(auto_error=False)

# Reports open in an opaque origin: their scripts run, but cannot read Airflow's cookie or call its API.
REPORT_HEADERS = {"Content-Security-Policy": "sandbox allow-scripts", "X-Content-Type-Options": "nosniff"}
REPORT_TYPES = {".html": "text/html; charset=utf-8", ".json": "application/json"}
RUN_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
METRICS_CONN_ID = "mlops_metrics"


async def airflow_user(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Any:
    """The caller, authenticated exactly as Airflow's own API does (401/403 otherwise)."""
    from airflow.api_fastapi.core_api.security import get_user

    return await get_user(request, _oauth_token=None, bearer_credentials=credentials)


def readable_pipelines(
    user: Annotated[Any, Depends(airflow_user)], dags: Annotated[dict[str, str], Depends(catalog.mlops_dags)]
) -> list[Pipeline]:
    from airflow.api_fastapi.app import get_auth_manager

    readable = get_auth_manager().filter_authorized_dag_ids(dag_ids=set(dags), user=user, method="GET")
    return catalog.pipelines(dags, readable)


def scrape_token() -> str | None:
    """The password of the ``mlops_metrics`` connection: a bearer token that may read every pipeline's
    metrics (and nothing else); ``None`` when no such connection is defined."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.sdk import BaseHook

    try:
        return BaseHook.get_connection(METRICS_CONN_ID).password or None
    except AirflowNotFoundException:
        return None


async def metrics_reader(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    token: Annotated[str | None, Depends(scrape_token)],
) -> Any | None:
    """``None`` for the scrape token, else the Airflow user (401/403 otherwise): checked before anything
    is read for the caller."""
    if token and credentials and hmac.compare_digest(credentials.credentials.encode(), token.encode()):
        return None
    return await airflow_user(request, credentials)


def scraped_pipelines(
    reader: Annotated[Any | None, Depends(metrics_reader)],
    dags: Annotated[dict[str, str], Depends(catalog.mlops_dags)],
) -> list[Pipeline]:
    """Every pipeline for the scrape token; for a user, the pipelines they may read."""
    return catalog.pipelines(dags, set(dags)) if reader is None else readable_pipelines(reader, dags)


def lake() -> Storage:
    return LakeHook().get_conn()


def mlflow_target() -> MlflowTarget:
    return MlflowHook().get_conn()


def feature_views() -> Callable[[str], Any]:
    """Reads a feature view from Feast's registry; the store is opened on the first read."""
    target = FeastHook().get_conn()
    store = cache(target.store)
    return lambda name: store().get_feature_view(name)


Pipelines = Annotated[list[Pipeline], Depends(readable_pipelines)]
Lake = Annotated[Storage, Depends(lake)]
Mlflow = Annotated[MlflowTarget, Depends(mlflow_target)]


def prefix(request: Request) -> str:
    """Where this app is mounted (Airflow's root path included), for links between its pages."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def sections(found: list[Pipeline], storage: Storage, target: MlflowTarget, at: str) -> list[pages.Section]:
    parts = []
    for pipeline in found:
        if pipeline.spec is None:
            parts.append(pages.error_section(pipeline.spec_path, f"The spec does not load: {pipeline.error}"))
            continue
        try:
            parts.append(pages.pipeline_section(catalog.overview(pipeline, storage, target), at))
        except Exception as exc:  # one unreachable store must not take the other pipelines' page down
            log.exception("cannot read the state of pipeline %s", pipeline.name)
            parts.append(pages.error_section(pipeline.name, f"Cannot read its state: {type(exc).__name__}: {exc}"))
    return parts


def loaded(found: list[Pipeline], name: str) -> Pipeline:
    for pipeline in found:
        if pipeline.spec is not None and pipeline.name == name:
            return pipeline
    raise HTTPException(404, f"no pipeline {name!r} that you may read")


def stored_key(key: str, found: list[Pipeline], kind: FolderKind) -> str:
    """``key`` once it is a plain relative key inside a readable pipeline's ``kind`` folder; 400/404 otherwise."""
    try:
        catalog.check_key(key)
    except catalog.BadKey as exc:
        raise HTTPException(400, str(exc)) from exc
    if not any(pipeline.holds(key, kind) for pipeline in found):
        raise HTTPException(404, f"{key!r} is not in the {kind} folder of a pipeline you may read")
    return key


def read(storage: Storage, key: str) -> bytes:
    try:
        return storage.read_bytes(key)
    except FileNotFoundError as exc:
        raise HTTPException(404, f"no file {key!r} in the data lake") from exc


@app.get("/", response_class=HTMLResponse)
def index(request: Request, found: Pipelines, storage: Lake, target: Mlflow) -> str:
    at = prefix(request)
    return pages.monitoring_page("Model monitoring", sections(found, storage, target, at), at)


@app.get("/pipelines/{name}", response_class=HTMLResponse)
def pipeline_page(name: str, request: Request, found: Pipelines, storage: Lake, target: Mlflow) -> str:
    at = prefix(request)
    return pages.monitoring_page(f"Model monitoring: {name}", sections([loaded(found, name)], storage, target, at), at)


@app.get("/metrics")
def metrics(
    request: Request,
    found: Annotated[list[Pipeline], Depends(scraped_pipelines)],
    storage: Lake,
    target: Mlflow,
    views: Annotated[Callable[[str], Any], Depends(feature_views)],
) -> Response:
    """Pipeline and model metrics for Prometheus (see :mod:`airflow_mlops.ui.metrics`)."""
    from airflow_mlops.ui import metrics as prom

    readings, failed = [], []
    for pipeline in found:
        if pipeline.spec is None:
            failed.append(pipeline.name)
            continue
        try:
            readings.append(prom.read(catalog.overview(pipeline, storage, target), storage, views))
        except Exception:  # one unreachable store must not hide the other pipelines' metrics
            log.exception("cannot read the metrics of pipeline %s", pipeline.name)
            failed.append(pipeline.name)
    body, content_type = prom.exposition(prom.families(readings, failed), request.headers.get("accept", ""))
    return Response(body, headers={"Content-Type": content_type})


@app.get("/reports/{key:path}")
def report(key: str, found: Pipelines, storage: Lake) -> Response:
    """A report from a pipeline's reports folder, as stored (the Evidently HTML, or JSON)."""
    suffix = PurePosixPath(key).suffix
    if suffix not in REPORT_TYPES:
        raise HTTPException(404, f"{key!r} is not a report: only {', '.join(REPORT_TYPES)} files are served")
    data = read(storage, stored_key(key, found, "reports"))
    return Response(data, media_type=REPORT_TYPES[suffix], headers=REPORT_HEADERS)


@app.get("/validation/{key:path}", response_class=HTMLResponse)
def validation_result(key: str, request: Request, found: Pipelines, storage: Lake) -> str:
    """A GX validation result (JSON in the data lake), rendered as a table."""
    data = read(storage, stored_key(key, found, "validation"))
    try:
        result = json.loads(data)
    except ValueError as exc:
        raise HTTPException(422, f"{key!r} is not a validation result: {exc}") from exc
    return pages.validation_page(key, result, prefix(request))


@app.get("/runs/{run_id}", response_class=HTMLResponse)
def mlflow_run(run_id: str, request: Request, found: Pipelines, target: Mlflow) -> str:
    """An MLflow run of a readable pipeline: metrics, params, lineage tags, the versions it registered."""
    from mlflow.exceptions import MlflowException

    if not RUN_ID.fullmatch(run_id):
        raise HTTPException(400, f"{run_id!r} is not an MLflow run id")
    client = target.client()
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise HTTPException(404, f"no MLflow run {run_id!r}") from exc
    pipeline = run.data.tags.get(Tag.PIPELINE)
    if pipeline not in {p.name for p in found if p.spec is not None}:
        raise HTTPException(404, f"no MLflow run {run_id!r} of a pipeline you may read")
    versions = client.search_model_versions(f"run_id = '{run_id}'")
    return pages.run_page(run, pipeline, versions, prefix(request))


@app.get("/pipelines/{name}/feature-views/{view}", response_class=HTMLResponse)
def feature_view(
    name: str, view: str, request: Request, found: Pipelines, storage: Lake, start: str = "", end: str = ""
) -> str:
    """The pipeline's Feast feature view as the registry holds it, and the window a task materialised."""
    from airflow_mlops.steps.features import offline_days

    spec = loaded(found, name).spec
    assert spec is not None
    if view != spec.features.feature_view:
        raise HTTPException(404, f"pipeline {name!r} has no feature view {view!r}")
    definition = FeastHook().get_conn().store().get_feature_view(view)
    return pages.feature_view_page(
        definition, {"start": start, "end": end}, offline_days(storage, spec), prefix(request)
    )
