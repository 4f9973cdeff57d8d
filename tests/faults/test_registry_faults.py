"""The registry through faults: a registration killed half-way, a create that MLflow's HTTP retry resends,
and an MLflow server that answers 503 or refuses during the gate, scoring, promotion and infra validation.
Only a truly absent champion reads as "no champion"; an outage never promotes, skips or rejects anything."""

from __future__ import annotations

from datetime import date

import pytest
from mlflow.exceptions import MlflowException

from airflow_mlops import keys
from airflow_mlops.contracts import REJECTED, Tag
from airflow_mlops.steps import monitoring, registry
from tests.conftest import register_candidate

REGISTRATION_CALLS = ("registered-models/create", "model-versions/create")


def versions_of(target, model_name, key):
    return registry.model_versions(target, model_name, f"tag.{Tag.TRAINING_KEY} = '{key}'")


@pytest.mark.parametrize("path", REGISTRATION_CALLS)
@pytest.mark.parametrize("fault", ["refuse", "drop_reply"], ids=["before the server", "after the server committed"])
def test_a_registration_killed_half_way_leaves_one_complete_version_after_the_retry(
    through_proxy, mlflow_faults, spec, labelled, model_name, path, fault
):
    mlflow_faults.fail(fault, method="POST", path=path, times=1)
    with pytest.raises(MlflowException):
        register_candidate(through_proxy, spec, labelled, "k1", model_name=model_name)
    mlflow_faults.clear()
    retried = register_candidate(through_proxy, spec, labelled, "k1", model_name=model_name)
    [version] = versions_of(through_proxy, model_name, "k1")
    assert str(version.version) == retried.version
    assert {"logical_date", "trigger", "training_set", Tag.TRAINING_KEY} <= set(version.tags)
    assert not through_proxy.client().get_registered_model(model_name).aliases


def test_a_create_resent_by_mlflows_http_retry_is_settled_to_one_version(
    through_proxy, mlflow_faults, spec, labelled, model_name, monkeypatch
):
    """The server commits the version, the reply is lost, MLflow's client retries the POST: two versions
    with the same training key exist for a moment; registration keeps the first and deletes the other."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    rule = mlflow_faults.fail("drop_reply", method="POST", path="model-versions/create", times=1)
    candidate = register_candidate(through_proxy, spec, labelled, "k1", model_name=model_name)
    assert rule.hits == 1
    assert [str(v.version) for v in registry.model_versions(through_proxy, model_name)] == [candidate.version]


@pytest.fixture
def champion_and_challenger(through_proxy, spec, labelled, model_name, tmp_path):
    """v1 is champion; v2, trained on a shuffled label (worse), is a candidate with its training set."""
    from airflow_mlops.storage import LocalStorage

    champion = register_candidate(through_proxy, spec, labelled, "champion", model_name=model_name)
    registry.promote(through_proxy, model_name, champion.version, "first", gated_against=None)
    noisy = labelled.copy()
    noisy[spec.data.label_column] = noisy[spec.data.label_column].sample(frac=1, random_state=0).to_numpy()
    challenger = register_candidate(through_proxy, spec, noisy, "challenger", model_name=model_name)
    storage = LocalStorage(tmp_path / "lake")
    storage.write_parquet("training_sets/x.parquet", labelled)
    record = {"version": challenger.version, "metrics": challenger.metrics, "training_set": "training_sets/x.parquet"}
    return storage, record


@pytest.mark.parametrize("fault", ["status", "refuse"], ids=["503", "connection refused"])
def test_an_outage_during_the_gate_never_reads_as_no_champion(
    through_proxy, mlflow_faults, spec, champion_and_challenger, model_name, fault
):
    storage, candidate = champion_and_challenger
    spec = spec.model_copy(update={"training": spec.training.model_copy(update={"registered_model": model_name})})
    mlflow_faults.fail(fault, path="registered-models/get")
    with pytest.raises(MlflowException):
        registry.challenge(through_proxy, storage, spec, candidate)
    with pytest.raises(MlflowException):
        registry.promote(through_proxy, model_name, candidate["version"], "outage", gated_against=None)
    mlflow_faults.clear()
    decision = registry.challenge(through_proxy, storage, spec, candidate)
    assert not decision.promote and decision.champion_version == "1", decision.summary()
    assert registry.aliases(through_proxy, model_name) == {"champion": "1"}


def test_an_outage_during_scoring_fails_the_day_instead_of_skipping_it(
    through_proxy, mlflow_faults, spec, champion_and_challenger, model_name, labelled
):
    storage, _ = champion_and_challenger
    spec = spec.model_copy(update={"training": spec.training.model_copy(update={"registered_model": model_name})})
    day = date(2026, 1, 8)
    storage.write_parquet(f"{keys.offline_partition(spec, day)}/part.parquet", labelled.head(50))
    mlflow_faults.fail("status", path="registered-models/get")
    with pytest.raises(MlflowException):
        monitoring.score_day(through_proxy, storage, spec, day)
    assert not storage.exists(keys.predictions(spec, day))
    mlflow_faults.clear()
    scored = monitoring.score_day(through_proxy, storage, spec, day)
    assert scored is not None and scored["champion_version"] == "1" and scored["rows"] == 50


def test_infra_validation_during_an_outage_retries_and_never_rejects(
    through_proxy, mlflow_faults, spec, champion_and_challenger, model_name
):
    storage, candidate = champion_and_challenger
    spec = spec.model_copy(update={"training": spec.training.model_copy(update={"registered_model": model_name})})
    candidate = {**candidate, "model_uri": f"models:/{model_name}/{candidate['version']}"}
    mlflow_faults.fail("status", path="model-versions/get")  # the child resolves the version first
    with pytest.raises(ConnectionError, match="could not download"):
        registry.validate_infra(through_proxy, storage, spec, candidate)
    mlflow_faults.clear()
    tags = through_proxy.client().get_model_version(model_name, candidate["version"]).tags
    assert Tag.DECISION not in tags, tags
    assert registry.validate_infra(through_proxy, storage, spec, candidate)["problem"] is None


def test_a_stale_promotion_leaves_the_champion_and_says_why(through_proxy, spec, labelled, model_name):
    """The gate passed v2 against v1; meanwhile v3 became champion (by hand, a backfill, another spec)."""
    for key in ("v1", "v2", "v3"):
        register_candidate(through_proxy, spec, labelled, key, model_name=model_name)
    registry.promote(through_proxy, model_name, "1", "first", gated_against=None)
    registry.promote(through_proxy, model_name, "3", "by hand", gated_against="1")
    outcome = registry.promote(through_proxy, model_name, "2", "passed against v1", gated_against="1")
    assert not outcome.moved and outcome.champion == "3"
    assert "compared v2 against v1, but the champion is now v3" in outcome.reason
    assert registry.aliases(through_proxy, model_name) == {"champion": "3", "previous": "1"}
    assert through_proxy.client().get_model_version(model_name, "2").tags[Tag.DECISION] == REJECTED


def test_a_promotion_killed_before_its_tags_completes_them_on_retry(
    through_proxy, mlflow_faults, spec, labelled, model_name
):
    for key in ("v1", "v2"):
        register_candidate(through_proxy, spec, labelled, key, model_name=model_name)
    registry.promote(through_proxy, model_name, "1", "first", gated_against=None)
    mlflow_faults.fail("refuse", path="model-versions/set-tag", times=1)
    with pytest.raises(MlflowException):
        registry.promote(through_proxy, model_name, "2", "better", gated_against="1")
    assert registry.aliases(through_proxy, model_name) == {"champion": "2", "previous": "1"}
    retried = registry.promote(through_proxy, model_name, "2", "better", gated_against="1")
    assert retried.champion == "2" and retried.previous == "1"
    tags = through_proxy.client().get_model_version(model_name, "2").tags
    assert tags[Tag.DECISION] == "promoted" and tags[Tag.DECISION_REASON] == "better"


def test_a_run_left_running_by_a_killed_attempt_is_ended_by_the_retry(through_proxy, spec, labelled, model_name):
    """SIGKILL inside ``mlflow.start_run`` leaves the run RUNNING for ever; the retry ends it as KILLED."""
    client = through_proxy.client()
    experiment = through_proxy.experiment_id("churn")
    ghost = client.create_run(experiment, tags={Tag.TRAINING_KEY: "k1"}).info.run_id
    candidate = register_candidate(through_proxy, spec, labelled, "k1", model_name=model_name)
    assert client.get_run(ghost).info.status == "KILLED"
    assert client.get_run(candidate.run_id).info.status == "FINISHED"


def test_a_run_racing_on_the_same_key_returns_the_version_registered_first(
    through_proxy, spec, labelled, model_name, monkeypatch
):
    """Two runs of one key: the second looked before the first had registered, then registered too. The
    first version stands, the second is deleted, and the second run reports the first's version and run."""
    first = register_candidate(through_proxy, spec, labelled, "k1", model_name=model_name)
    monkeypatch.setattr(registry, "reuse", lambda *args: None)
    second = register_candidate(through_proxy, spec, labelled, "k1", model_name=model_name)
    assert (second.version, second.run_id, second.reused) == (first.version, first.run_id, True)
    assert [str(v.version) for v in registry.model_versions(through_proxy, model_name)] == [first.version]
