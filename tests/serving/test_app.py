"""The prediction service: online features from Feast, scored by @champion, over HTTP (FastAPI's client)."""

from __future__ import annotations

import json
import time
from datetime import date
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from airflow_mlops import keys
from airflow_mlops.dev.stack import wait_for
from airflow_mlops.serving.app import create_app
from airflow_mlops.steps import features, monitoring, registry, training
from airflow_mlops.steps.serving import OnlineScorer
from airflow_mlops.storage import LocalStorage, read_partition
from tests.conftest import SPEC_PATH, day, register_candidate

pytestmark = pytest.mark.filterwarnings("ignore")


def published(tmp_path, raw_root, spec, days, monkeypatch) -> dict:
    """``days`` published and materialised (the last is the newest online), an MLflow store without models,
    and the Airflow connections the service reads."""
    storage = LocalStorage(tmp_path / "lake")
    raw = LocalStorage(raw_root)
    for ds in days:
        features.write_offline(storage, spec, ds, read_partition(raw, keys.raw_partition(spec, ds)))
    feast = features.FeastTarget(
        {
            "project": "serving",
            "registry": {"registry_type": "sql", "path": f"sqlite:///{tmp_path / 'registry.db'}"},
            "online_store": {"type": "sqlite", "path": str(tmp_path / "online.db")},
            "offline_store": {"type": "duckdb"},
        }
    )
    store = feast.store()
    features.apply(store, spec, storage)
    features.materialize(store, storage, spec, days[-1])
    target = registry.MlflowTarget(f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_location=(tmp_path / "art").as_uri())
    monkeypatch.setenv("AIRFLOW_CONN_FEAST_SERVING", json.dumps({"conn_type": "mlops_feast", "extra": feast.config}))
    mlflow_extra = {"tracking_uri": target.tracking_uri, "artifact_location": target.artifact_location}
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_SERVING", json.dumps({"conn_type": "mlops_mlflow", "extra": mlflow_extra}))
    return {"storage": storage, "target": target, "store": store}


@pytest.fixture
def stores(tmp_path, scenario_root, spec, monkeypatch):
    """The churn demo's days 0-2 published and materialised (day 2 is the newest online)."""
    return published(tmp_path, scenario_root, spec, [day(0), day(1), day(2)], monkeypatch)


def service(reload_interval_s: float = 0.2, spec_path: Path = SPEC_PATH) -> TestClient:
    app = create_app(
        str(spec_path),
        mlflow_conn_id="mlflow_serving",
        feast_conn_id="feast_serving",
        reload_interval_s=reload_interval_s,
    )
    return TestClient(app)


def champion(stores, spec, labelled, key: str, gated_against: str | None = None) -> str:
    version = register_candidate(stores["target"], spec, labelled, key).version
    registry.promote(stores["target"], spec.registered_model_name, version, "test", gated_against=gated_against)
    return version


def test_online_scores_equal_batch_scores_and_unknown_ids_are_named(stores, spec, labelled):
    champion(stores, spec, labelled, "k1")
    with service() as client:
        response = client.post("/predict", json={"ids": [3, 1, 424242, 2]})
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["pipeline"], body["model"], body["version"]) == ("churn", "churn_model", "1")
        assert body["unknown"] == [424242]
        online = {p["id"]: p["score"] for p in body["predictions"]}
        assert list(online) == [3, 1, 2]  # request order

        newest = read_partition(stores["storage"], keys.offline_partition(spec, day(2)))
        model = training.load_model(f"models:/{spec.registered_model_name}/1")  # what score_batch loads
        batch = monitoring.score(model, newest, spec, "1").set_index(spec.data.entity_key)["score"]
        for entity, score in online.items():
            assert score == pytest.approx(batch[entity], abs=1e-12)

        one = client.get("/predict/1").json()
        assert one == {"customer_id": 1, "score": online[1], "version": "1"}
        missing = client.get("/predict/424242")
        assert missing.status_code == 404
        assert missing.json()["detail"] == "no online features for customer_id 424242 in customer_features"
        assert client.get("/predict/abc").status_code == 422
        assert client.post("/predict", json={"ids": []}).status_code == 422
        assert client.post("/predict", json={"ids": [2**63]}).status_code == 422  # beyond Feast's INT64 key
        assert client.get(f"/predict/{2**63}").status_code == 422
        twice = client.post("/predict", json={"ids": [2, 1, 2]}).json()["predictions"]
        assert [p["id"] for p in twice] == [2, 1, 2]
        not_a_key = client.post("/predict", json={"ids": [1, "x"]})
        assert (
            not_a_key.status_code == 422
            and not_a_key.json()["detail"] == "customer_id is a key of type int64, got ['x']"
        )
        assert client.post("/predict", json={"ids": list(range(1001))}).status_code == 422


@pytest.mark.parametrize("task", ["regression", "multiclass"])
def test_a_regression_and_a_multiclass_pipeline_serve_string_keys_as_their_batch_scores(
    tmp_path, rides_lake, rides_spec, rides_labelled, demand_spec, demand_labelled, monkeypatch, task
):
    """The rides example (string station ids): the predicted count, or the likeliest demand level and its
    probability, online equal to batch scoring."""
    spec, labelled = (rides_spec, rides_labelled) if task == "regression" else (demand_spec, demand_labelled)
    spec_path = tmp_path / f"{spec.name}.yaml"
    spec_path.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    days = sorted(date.fromisoformat(p.name.removeprefix("date=")) for p in (rides_lake / "raw" / "stations").iterdir())
    stores = published(tmp_path, rides_lake, spec, days[-2:], monkeypatch)
    version = register_candidate(stores["target"], spec, labelled, "s1").version
    registry.promote(stores["target"], spec.registered_model_name, version, "test", gated_against=None)
    with service(spec_path=spec_path) as client:
        body = client.post("/predict", json={"ids": ["st-0003", "st-9999", "st-0001"]}).json()
        assert body["unknown"] == ["st-9999"] and [p["id"] for p in body["predictions"]] == ["st-0003", "st-0001"]
        newest = read_partition(stores["storage"], keys.offline_partition(spec, days[-1]))
        model = training.load_model(f"models:/{spec.registered_model_name}/{version}")
        batch = monitoring.score(model, newest, spec, version).set_index("station_id")
        for prediction in body["predictions"]:
            assert prediction["score"] == pytest.approx(batch.loc[prediction["id"], "score"], abs=1e-9)
            if task == "multiclass":
                assert prediction["prediction"] == batch.loc[prediction["id"], "prediction"]
            else:
                assert "prediction" not in prediction and prediction["score"] > 1  # a count
        one = client.get("/predict/st-0001").json()
        assert one["station_id"] == "st-0001" and one["score"] == body["predictions"][1]["score"]
        assert (
            client.post("/predict", json={"ids": [1]}).json()["detail"] == "station_id is a key of type string, got [1]"
        )
        # @champion moved by hand to a model of the other task: not loaded, the champion keeps serving
        other, other_labelled = (demand_spec, demand_labelled) if task == "regression" else (rides_spec, rides_labelled)
        name = spec.registered_model_name
        wrong = register_candidate(stores["target"], other, other_labelled, "o1", model_name=name).version
        stores["target"].client().set_registered_model_alias(name, "champion", wrong)
        wait_for(
            lambda: (
                f"@champion v{wrong} predicts {other.data.task}" in (client.get("/health").json()["last_error"] or "")
            ),
            "the service to refuse the other task's model",
            timeout=30,
            interval=0.2,
        )
        assert client.post("/predict", json={"ids": ["st-0001"]}).json()["version"] == version


def test_the_service_follows_champion_and_waits_for_the_first(stores, spec, labelled):
    with service() as client:
        assert client.get("/health").status_code == 503
        unavailable = client.post("/predict", json={"ids": [1]})
        assert unavailable.status_code == 503 and "has no @champion" in unavailable.json()["detail"]

        champion(stores, spec, labelled, "k1")
        deadline = time.monotonic() + 30
        while client.get("/health").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.get("/health").json()["version"] == "1"

        # a rollback or promotion moves the alias: the next look at it swaps the model in
        champion(stores, spec, labelled, "k2", gated_against="1")
        while client.get("/health").json()["version"] != "2" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.post("/predict", json={"ids": [1]}).json()["version"] == "2"


def test_mlflow_down_keeps_the_loaded_champion_serving(stores, spec, labelled, monkeypatch):
    champion(stores, spec, labelled, "k1")
    scorer = OnlineScorer(spec, stores["store"], stores["target"])
    assert scorer.refresh() and scorer.champion is not None
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    scorer.target = registry.MlflowTarget("http://127.0.0.1:9")  # nothing listens there
    assert not scorer.refresh()
    assert scorer.last_error and scorer.champion.version == "1"
    assert scorer.score([1]).version == "1"


def test_one_failing_request_does_not_fail_the_requests_batched_with_it():
    import asyncio

    from airflow_mlops.serving.app import Batcher
    from airflow_mlops.steps.serving import Scored

    def score(ids):
        if 13 in ids:
            raise ValueError("bad id 13")
        return Scored("4", {i: i / 100 for i in ids if i != 99}, [i for i in ids if i == 99])

    async def scenario():
        batcher = Batcher(score)
        loop = asyncio.create_task(batcher.run())
        cancelled = asyncio.create_task(batcher.submit([5]))
        requests = [batcher.submit([1, 99]), batcher.submit([13]), batcher.submit([2])]
        await asyncio.sleep(0)
        cancelled.cancel()  # its client went away while it waited: the loop must go on
        results = await asyncio.gather(*requests, return_exceptions=True)
        after = await batcher.submit([3])
        loop.cancel()
        return results, after

    (first, failed, second), after = asyncio.run(scenario())
    assert first == Scored("4", {1: 0.01}, [99]) and second == Scored("4", {2: 0.02}, [])
    assert isinstance(failed, ValueError) and after.scores == {3: 0.03}
