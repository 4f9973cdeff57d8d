"""The prediction service of one pipeline: ``POST /predict`` with entity ids, ``GET /predict/{id}``.

Features come from Feast's online store (what ``publish_features`` materialised), the model is the
registered ``@champion``, reloaded in the background when the alias moves. Connections are Airflow's
(``feast_default``, ``mlflow_default``), resolved once at start, so the service runs wherever the
pipeline's tasks run: ``airflow-mlops serve <pipeline>``, or the ``prediction`` compose service.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, HTTPException, Path
from pydantic import BaseModel, Field

from airflow_mlops.hooks import FeastHook, MlflowHook
from airflow_mlops.spec import load_spec

if TYPE_CHECKING:
    from airflow_mlops.steps.serving import Scored

log = logging.getLogger(__name__)

MAX_IDS = 1000  # per request: a larger batch belongs to batch scoring
MAX_BATCH_IDS = 4000  # per model call, when requests are batched together


class Batcher:
    """Continuous batching: the requests that arrive while the model scores one batch are scored together
    in the next (one feature read, one ``predict_proba`` or ``predict``). sklearn pays most of its cost per call, not
    per row, so under concurrent load this multiplies throughput; a lone request waits for nothing.
    """

    def __init__(self, score: Callable[[list[Any]], Scored]) -> None:
        self.score = score
        self.queue: asyncio.Queue[tuple[list[Any], asyncio.Future[Scored]]] = asyncio.Queue()

    async def submit(self, ids: list[Any]) -> Scored:
        done: asyncio.Future[Scored] = asyncio.get_running_loop().create_future()
        await self.queue.put((ids, done))
        return await done

    async def run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while not self.queue.empty() and sum(len(ids) for ids, _ in batch) < MAX_BATCH_IDS:
                batch.append(self.queue.get_nowait())
            try:
                await self.answer(batch)
            except Exception:  # never let one batch stop the service
                log.exception("scoring a batch of %d request(s) failed", len(batch))

    async def answer(self, batch: list[tuple[list[Any], asyncio.Future[Scored]]]) -> None:
        """Score the batch in one call; if that fails, each request alone, so one bad request (or an
        outage) fails only the requests it concerns."""
        from airflow_mlops.steps.serving import Scored

        try:
            result = await asyncio.to_thread(self.score, [i for ids, _ in batch for i in ids])
        except Exception as exc:
            if len(batch) == 1:
                settle(batch[0][1], error=exc)
                return
            for ids, done in batch:
                await self.answer([(ids, done)])
            return
        for ids, done in batch:
            mine = {i: result.scores[i] for i in ids if i in result.scores}
            predicted = {i: result.predicted[i] for i in ids if i in result.predicted}
            settle(done, Scored(result.version, mine, [i for i in ids if i not in result.scores], predicted))


def settle(done: asyncio.Future[Scored], result: Scored | None = None, error: Exception | None = None) -> None:
    """Answer a waiting request, unless it was cancelled meanwhile (its client went away)."""
    if done.done():
        return
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(result)  # type: ignore[arg-type]


INT64 = {"ge": -(2**63), "le": 2**63 - 1}  # Feast's INT64 join key: a larger id is a bad request, not a 500
# an INT64 or a STRING join key, as the spec's data.entity_key_dtype says (checked per request)
EntityId = Annotated[int, Field(**INT64)] | Annotated[str, Field(min_length=1, max_length=512)]


class PredictRequest(BaseModel):
    ids: Annotated[list[EntityId], Field(min_length=1, max_length=MAX_IDS, description="entity keys")]


class Prediction(BaseModel):
    id: int | str
    score: float = Field(description="the probability of 1, the predicted value, or the likeliest class's probability")
    prediction: str | None = Field(default=None, description="multiclass: the likeliest class")


class PredictResponse(BaseModel):
    pipeline: str
    model: str
    version: str
    predictions: list[Prediction]
    unknown: list[int | str] = Field(description="ids with no features in the online store: not scored")


def create_app(
    spec_path: str,
    *,
    mlflow_conn_id: str = MlflowHook.default_conn_name,
    feast_conn_id: str = FeastHook.default_conn_name,
    reload_interval_s: float = 10,
) -> FastAPI:
    from airflow_mlops.steps.serving import NoChampion, OnlineScorer

    spec = load_spec(spec_path)
    scorer = OnlineScorer(spec, FeastHook(feast_conn_id).get_conn().store(), MlflowHook(mlflow_conn_id).get_conn())
    key = spec.data.entity_key

    batcher = Batcher(scorer.score)
    batching: asyncio.Task[None] | None = None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        nonlocal batching
        await asyncio.to_thread(scorer.refresh)
        stop = threading.Event()
        scorer.watch(reload_interval_s, stop)
        batching = asyncio.create_task(batcher.run())
        yield
        batching.cancel()
        stop.set()

    app = FastAPI(title=f"{spec.name} predictions", lifespan=lifespan)

    keyed_by_text = spec.data.entity_key_dtype == "string"

    def typed(ids: list[Any]) -> list[Any]:
        """The ids, each of the key's type: a string for a string key, an integer otherwise (422 if not)."""
        wrong = [i for i in ids if isinstance(i, str) != keyed_by_text]
        if wrong:
            raise HTTPException(422, f"{key} is a key of type {spec.data.entity_key_dtype}, got {wrong[:5]}")
        return ids

    async def scored(ids: list[Any]) -> Scored:
        typed(ids)
        try:
            return await batcher.submit(ids)
        except NoChampion as exc:
            raise HTTPException(503, str(exc)) from None

    @app.post("/predict", response_model=PredictResponse, response_model_exclude_none=True)
    async def predict(request: PredictRequest) -> PredictResponse:
        """Scores for up to 1000 ids; ids without online features are listed in ``unknown``."""
        result = await scored(request.ids)
        return PredictResponse(
            pipeline=spec.name,
            model=spec.registered_model_name,
            version=result.version,
            predictions=[
                Prediction(id=i, score=result.scores[i], prediction=result.predicted.get(i))
                for i in request.ids
                if i in result.scores
            ],
            unknown=result.unknown,
        )

    @app.get("/predict/{entity_id}")
    async def predict_one(entity_id: Annotated[str, Path(min_length=1, max_length=512)]) -> dict[str, Any]:
        """The score of one id; 404 when the online store has no features for it."""
        entity: int | str = entity_id
        if not keyed_by_text:
            try:
                entity = int(entity_id)
            except ValueError:
                raise HTTPException(422, f"{key} is a key of type int64, got {entity_id!r}") from None
            if not INT64["ge"] <= entity <= INT64["le"]:
                raise HTTPException(422, f"{key} {entity_id} is out of the int64 range")
        result = await scored([entity])
        if result.unknown:
            raise HTTPException(404, f"no online features for {key} {entity_id} in {spec.features.feature_view}")
        predicted = {"prediction": result.predicted[entity]} if entity in result.predicted else {}
        return {key: entity, "score": result.scores[entity], **predicted, "version": result.version}

    @app.get("/health")
    def health() -> dict[str, Any]:
        """503 until a champion is loaded; ``last_error`` says why MLflow could not be read (still serving)."""
        champion = scorer.champion
        if champion is None:
            raise HTTPException(503, scorer.last_error or f"{spec.registered_model_name} has no @champion yet")
        if batching is None or batching.done():
            raise HTTPException(503, "the scoring loop is not running")
        checked = datetime.fromtimestamp(scorer.last_check, UTC).isoformat() if scorer.last_check else None
        return {
            "pipeline": spec.name,
            "version": champion.version,
            "checked_at": checked,
            "last_error": scorer.last_error,
        }

    return app
