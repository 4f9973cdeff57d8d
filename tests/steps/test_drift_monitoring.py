"""Drift verdicts (held to Evidently's own), the retraining policy, scoring and performance."""

import json
from datetime import date
from itertools import pairwise
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from airflow_mlops import keys
from airflow_mlops.spec import DriftPolicySpec
from airflow_mlops.steps import drift, monitoring
from airflow_mlops.storage import DataError
from tests.conftest import SMALL, churn_data, day


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return pd.concat([churn_data.snapshot(SMALL, i) for i in range(4, 8)], ignore_index=True)


def fast_and_evidently(reference, current, spec, share=0.3):
    baseline, _ = drift.evidently_drift(reference, current, spec.data, share)
    return drift.compare(drift.build_profile(reference, spec.data), current, spec.data, share), baseline


# Evidently switches from statistical tests (K-S, chi-square, z) to distances above 1000 reference rows.
@pytest.mark.parametrize("reference_days", [(4, 6), (4, 8)], ids=["tests", "distances"])
@pytest.mark.parametrize("current_day", [9, 13], ids=["same-world", "covariate-shift"])
def test_decisions_and_scores_match_evidentlys_preset(reference_days, current_day, spec):
    reference = pd.concat([churn_data.snapshot(SMALL, i) for i in range(*reference_days)], ignore_index=True)
    result, baseline = fast_and_evidently(reference, churn_data.snapshot(SMALL, current_day), spec)
    assert [(c.column, c.method, c.threshold, c.drifted) for c in result.columns] == [
        (c.column, c.method, c.threshold, c.drifted) for c in baseline.columns
    ]
    assert [c.score for c in result.columns] == pytest.approx([c.score for c in baseline.columns], abs=1e-9)
    assert result.dataset_drift == baseline.dataset_drift == (current_day == 13)
    if current_day == 13:
        assert {"monthly_charges", "support_calls_30d", "usage_minutes_7d"} <= set(result.drifted_columns)


def test_few_valued_numeric_columns_follow_evidentlys_method_switch(reference, spec):
    rng = np.random.default_rng(3)
    reference = reference.assign(num_products=rng.choice([1, 2, 3], len(reference)))
    same = churn_data.snapshot(SMALL, 9).assign(num_products=lambda f: rng.choice([1, 2, 3], len(f), p=[0.2, 0.3, 0.5]))
    spread = same.assign(num_products=lambda f: rng.integers(1, 9, len(f)))  # now > 5 values: Wasserstein
    for current, method in ((same, "Jensen-Shannon distance"), (spread, "Wasserstein distance (normed)")):
        result, baseline = fast_and_evidently(reference, current, spec)
        fast, evidently = (next(c for c in r.columns if c.column == "num_products") for r in (result, baseline))
        assert (fast.method, fast.drifted) == (evidently.method, evidently.drifted) and fast.method == method
        assert fast.score == pytest.approx(evidently.score, abs=1e-9)


def test_wasserstein_is_exact_and_a_large_reference_stays_within_its_stored_bound():
    from scipy import stats

    rng = np.random.default_rng(7)
    reference, current = rng.lognormal(size=3000), rng.lognormal(0.1, 1.1, size=5000)
    exact = stats.wasserstein_distance(reference, current)
    assert drift.wasserstein_to_atoms(np.sort(reference), np.sort(current)) == pytest.approx(exact, rel=1e-12)

    reference = rng.standard_t(3, size=300_000)  # heavy tails: the atoms have to grow past the default
    profile = drift._numeric_profile("x", reference)
    assert drift.ATOMS < len(profile.atoms) < len(reference) and profile.atom_error <= drift.MAX_ATOM_ERROR
    score = drift.wasserstein_to_atoms(np.asarray(profile.atoms), np.sort(current)) / profile.std
    assert abs(score - stats.wasserstein_distance(reference, current) / np.std(reference)) <= profile.atom_error


def test_profile_round_trips_through_storage_and_the_report_shows_the_decision(reference, spec, storage):
    profile = drift.build_profile(reference, spec.data)
    profile.save(storage, "reports/reference/version=3")
    loaded = drift.ReferenceProfile.load(storage, "reports/reference/version=3")
    assert drift.ReferenceProfile.load(storage, "reports/reference/version=4") is None
    current = churn_data.snapshot(SMALL, 13)
    result = drift.compare(loaded, current, spec.data, 0.3)
    assert result == drift.compare(profile, current, spec.data, 0.3)
    snapshot = drift.render_report(loaded, current, result, spec.data)
    shown = drift.read_verdicts(snapshot.dict(), 0.3, result.reference_rows, result.current_rows)
    assert [(c.column, c.drifted) for c in shown.columns] == [(c.column, c.drifted) for c in result.columns]
    assert [c.score for c in shown.columns] == pytest.approx([c.score for c in result.columns])
    assert "(full data)" in snapshot.get_html_str(as_iframe=False)


def test_unusable_columns_are_named(reference, spec):
    profile = drift.build_profile(reference, spec.data)
    current = churn_data.snapshot(SMALL, 9)
    with pytest.raises(DataError, match="'region' has no values"):
        drift.compare(profile, current.assign(region=None), spec.data, 0.3)
    with pytest.raises(DataError, match=r"current data lacks feature columns \['tenure_months'\]"):
        drift.compare(profile, current.drop(columns="tenure_months"), spec.data, 0.3)


POLICY = DriftPolicySpec(
    max_drifted_share=0.3, key_features=["monthly_charges"], min_performance={"roc_auc": 0.7}, cooldown_days=5
)


def decide(share=0.0, drifted=(), metrics=None, last=None, active=False):
    return monitoring.decide_retraining(
        POLICY, share, list(drifted), metrics, today=date(2026, 2, 10), last_training=last, training_active=active
    )


def test_policy_branches():
    assert not decide().retrain and decide().reason == "no drift"
    under = decide(share=0.1, drifted=["tenure_months"])
    assert not under.retrain
    assert (
        under.reason == "drift under the limit: 10% of features drifted (limit 30%), no key feature: ['tenure_months']"
    )
    assert decide(share=0.4, drifted=["a", "b", "c", "d"]).retrain
    key = decide(share=0.1, drifted=["monthly_charges"])
    assert key.retrain and "key features" in key.reason
    decay = decide(metrics={"roc_auc": 0.61})
    assert decay.retrain and "performance" in decay.reason
    assert not decide(metrics={"roc_auc": 0.75}).retrain


def test_policy_holds_back_during_cooldown_and_active_runs():
    cooled = decide(share=0.5, drifted=["a"], last=date(2026, 2, 8))
    assert not cooled.retrain and "cooldown" in cooled.why_not and "2 day(s)" in cooled.why_not
    assert decide(share=0.5, drifted=["a"], last=date(2026, 2, 4)).retrain
    busy = decide(share=0.5, drifted=["a"], active=True)
    assert not busy.retrain and "already" in busy.why_not


class Constant:
    def predict(self, frame):
        return np.column_stack([np.full(len(frame), 0.3), np.full(len(frame), 0.7)])


def test_scores_and_performance(spec):
    frame = churn_data.snapshot(SMALL, 2)
    scored = monitoring.score(Constant(), frame, spec, "4")
    assert list(scored.columns) == ["customer_id", "event_timestamp", "score", "model_version"]
    assert scored["score"].eq(0.7).all() and scored["model_version"].eq("4").all()
    labels = churn_data.labels_arriving(SMALL, 2 + SMALL.label_delay_days)
    joined = scored.merge(labels, on=["customer_id", "event_timestamp"])
    metrics = monitoring.performance(joined, spec.data)
    assert metrics["roc_auc"] == pytest.approx(0.5) and metrics["labelled_rows"] == len(frame)
    assert metrics["by_version"] == {"4": {key: value for key, value in metrics.items() if key != "by_version"}}
    assert monitoring.performance(joined.iloc[0:0], spec.data) is None


def test_performance_per_model_version_when_a_window_spans_a_promotion(spec):
    labels = churn_data.labels_arriving(SMALL, 2 + SMALL.label_delay_days)
    frame = churn_data.snapshot(SMALL, 2)
    old, new = frame.iloc[: len(frame) // 2], frame.iloc[len(frame) // 2 :]
    scored = pd.concat([monitoring.score(Constant(), old, spec, "4"), monitoring.score(ByCharges(), new, spec, "5")])
    metrics = monitoring.performance(scored.merge(labels, on=["customer_id", "event_timestamp"]), spec.data)
    assert set(metrics["by_version"]) == {"4", "5"}
    assert metrics["by_version"]["4"]["roc_auc"] == pytest.approx(0.5)
    assert metrics["by_version"]["5"]["roc_auc"] > 0.5
    assert metrics["by_version"]["4"]["labelled_rows"] + metrics["by_version"]["5"]["labelled_rows"] == len(frame)


class ByCharges:
    """Scores that carry some signal: the higher the monthly charges, the likelier churn."""

    def predict(self, frame):
        p = (frame["monthly_charges"].to_numpy() / frame["monthly_charges"].max()).clip(0, 1)
        return np.column_stack([1 - p, p])


def test_performance_report_is_evidentlys_classification_report_of_the_same_rows(spec, storage):
    for index in range(3):
        scored = monitoring.score(ByCharges(), churn_data.snapshot(SMALL, index), spec, "2")
        storage.write_parquet(keys.predictions(spec, day(index)), scored)
    for index in range(3, 6):  # labels arrive label_delay_days after their snapshot
        labels = churn_data.labels_arriving(SMALL, index)
        storage.write_parquet(f"{keys.labels_partition(spec, day(index))}/labels.parquet", labels)

    record = monitoring.performance_report(storage, spec, day(5))
    assert record is not None and record["labelled_rows"] == 3 * SMALL.customers
    assert record["report_key"] == keys.report(spec, day(5), "performance.html")
    html = storage.read_bytes(record["report_key"]).decode()
    assert f'{{"value": "{record["roc_auc"]:.3f}", "label": "ROC AUC"}}' in html  # the written report shows our AUC
    snapshot = monitoring.evidently_performance(monitoring.labelled_predictions(storage, spec, day(5)), spec.data)
    shown = {m["config"]["type"].rsplit(":", 1)[-1]: m["value"] for m in snapshot.dict()["metrics"]}
    assert shown["RocAuc"] == pytest.approx(record["roc_auc"]) and shown["Accuracy"] == pytest.approx(
        record["accuracy"]
    )
    assert json.loads(storage.read_bytes(keys.report(spec, day(5), "performance.json")))["roc_auc"] == record["roc_auc"]


def test_distance_methods_are_evidentlys_defaults():
    from evidently.legacy.calculations import stattests

    for ours, theirs in (
        (drift.WASSERSTEIN, stattests.wasserstein_stat_test),
        (drift.JENSEN_SHANNON, stattests.jensenshannon_stat_test),
    ):
        assert ours == (theirs.display_name, theirs.default_threshold)


def test_a_retraining_storm_asks_once_per_cooldown(spec, storage, tmp_path):
    """Drift every day while every training run fails before registering a model (its training set keeps
    failing the gate): the decisions themselves start the cooldown, not only registered versions."""
    from airflow_mlops.steps.registry import MlflowTarget

    empty_registry = MlflowTarget(f"sqlite:///{tmp_path / 'mlflow.db'}")
    drifting = {"share": 0.9, "drifted_columns": ["monthly_charges"], "report": "drift.html"}
    cooldown = spec.monitoring.drift.cooldown_days
    asked = [
        day
        for day in pd.date_range("2026-02-01", periods=3 * cooldown).date
        if monitoring.decide(empty_registry, storage, spec, day, drifting, None, training_active=False)["retrain"]
    ]
    assert len(asked) == 3 and all((b - a).days == cooldown for a, b in pairwise(asked))


# -- shadow rollout ---------------------------------------------------------------------------------------


def shadow_spec(spec, **rollout):
    training = spec.training.model_copy(update={"rollout": spec.training.rollout.model_copy(update=rollout)})
    return spec.model_copy(update={"training": training})


def judge(spec, champion, challenger, days, elapsed=None, **rollout):
    return monitoring.judge_shadow(
        shadow_spec(spec, shadow_days=3, **rollout),
        champion and {"roc_auc": champion},
        challenger and {"roc_auc": challenger},
        days=days,
        elapsed=days if elapsed is None else elapsed,
        labelled_rows=500,
        champion_version="1",
        challenger_version="2",
    )


def test_shadow_policy_waits_the_window_then_applies_the_gate_on_live_labels(spec):
    assert judge(spec, 0.80, 0.90, days=1).verdict == "shadowing"  # better, but the window is not over
    promoted = judge(spec, 0.80, 0.90, days=3)
    assert promoted.verdict == "promote" and "on 500 live labels over 3 days" in promoted.reasons[-1]
    rejected = judge(spec, 0.80, 0.802, days=3)  # under the gate's min_absolute_change of 0.005
    assert rejected.verdict == "reject" and "roc_auc" in " ".join(rejected.reasons)
    assert judge(spec, 0.80, 0.65, days=4).verdict == "reject"  # under the absolute threshold 0.70


def test_shadow_policy_without_labels_of_both_classes_waits_then_gives_up(spec):
    waiting = judge(spec, None, None, days=5)
    assert (
        waiting.verdict == "shadowing"
        and "waiting for 100 labelled rows with two classes or values" in waiting.reasons[0]
    )
    assert judge(spec, None, None, days=0, elapsed=5).verdict == "shadowing"  # not scored yet
    never = judge(spec, None, None, days=0, elapsed=6)
    assert never.verdict == "reject" and "never scored in 6 days of shadow" in never.reasons[0]
    given_up = judge(spec, None, None, days=6)  # twice the window
    assert given_up.verdict == "reject" and "fewer than 100 labelled rows" in given_up.reasons[0]
    assert "in 6 days of shadow" in given_up.reasons[0]


def test_a_failing_champion_is_replaced_early_only_when_the_spec_says_so(spec):
    # the demo's case: the champion fell under its 0.70 floor; the challenger beats it on the same labels
    alerted = judge(spec, 0.49, 0.62, days=1)
    assert alerted.verdict == "shadowing" and alerted.champion_failing
    assert "champion v1 is failing (roc_auc 0.490 past its limit 0.7)" in alerted.reasons[0]
    assert "roc_auc 0.620 against 0.490" in alerted.reasons[0]
    assert judge(spec, 0.49, 0.62, days=1, promote_when_champion_fails=True).verdict == "promote"
    assert judge(spec, 0.49, 0.45, days=1, promote_when_champion_fails=True).verdict == "shadowing"  # not better
    assert not judge(spec, 0.75, 0.90, days=1, promote_when_champion_fails=True).champion_failing  # not failing


def test_shadow_pairs_join_both_models_scores_of_the_same_rows_with_arrived_labels(spec, storage):
    class Half:
        def predict(self, frame):
            return np.column_stack([np.full(len(frame), 0.5), np.full(len(frame), 0.5)])

    for index in (2, 3):
        snapshot = churn_data.snapshot(SMALL, index)
        storage.write_parquet(keys.predictions(spec, day(index)), monitoring.score(Constant(), snapshot, spec, "1"))
        storage.write_parquet(keys.shadow_predictions(spec, day(index)), monitoring.score(Half(), snapshot, spec, "2"))
    arrived = churn_data.labels_arriving(SMALL, 2 + SMALL.label_delay_days)  # the labels of day 2's snapshot
    storage.write_parquet(f"{keys.labels_partition(spec, day(4))}/labels.parquet", arrived)
    pairs, days = monitoring.shadow_pairs(storage, spec, "1", "2", day(2), day(4))
    assert days == 2  # days 2 and 3 were scored by both
    assert len(pairs) == len(arrived) == SMALL.customers  # day 3's rows have no label yet
    assert pairs["score_champion"].eq(0.7).all() and pairs["score_challenger"].eq(0.5).all()
    assert set(pairs["churned"]) <= {0, 1}
    assert monitoring.shadow_pairs(storage, spec, "1", "2", day(5), day(6))[0].empty
    # rows other versions scored: another champion's, an earlier challenger's
    for champion, challenger in (("7", "2"), ("1", "3")):
        pairs, days = monitoring.shadow_pairs(storage, spec, champion, challenger, day(2), day(4))
        assert pairs.empty and days == 0


def test_a_challenger_that_fails_to_load_misses_its_day_but_the_champion_scores(
    spec, storage, tmp_path, labelled, monkeypatch
):
    from airflow_mlops.steps import registry, training
    from tests.conftest import register_candidate

    target = registry.MlflowTarget(f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_location=(tmp_path / "a").as_uri())
    for key in ("k1", "k2"):
        register_candidate(target, spec, labelled, key)
    registry.promote(target, spec.registered_model_name, "1", "first", gated_against=None)
    registry.start_shadow(target, spec.registered_model_name, "2", "passed", gated_against="1", since=day(3))
    storage.write_parquet(f"{keys.offline_partition(spec, day(3))}/part.parquet", churn_data.snapshot(SMALL, 3))
    shadow = shadow_spec(spec, mode="shadow")
    loaded = training.load_model

    def champion_only(uri, flavor="pyfunc"):
        if uri.endswith("/2"):
            raise OSError("the challenger's artifacts are unreadable")
        return loaded(uri, flavor)

    scored = monitoring.score_day(target, storage, shadow, day(3))
    assert scored["challenger_version"] == "2" and storage.exists(keys.shadow_predictions(spec, day(3)))
    storage.delete(keys.shadow_predictions(spec, day(3)))
    monkeypatch.setattr(training, "load_model", champion_only)
    scored = monitoring.score_day(target, storage, shadow, day(3))
    assert scored["champion_version"] == "1" and scored["rows"] == SMALL.customers
    assert scored["challenger_version"] is None and not storage.exists(keys.shadow_predictions(spec, day(3)))
    # outside shadow mode the challenger is not scored at all
    assert monitoring.score_day(target, storage, spec, day(3))["challenger_version"] is None


def test_regression_performance_and_evidentlys_regression_report_agree(rides_spec, rides_labelled):
    from airflow_mlops.steps import training

    data = rides_spec.data
    split = training.time_split(rides_labelled, "event_timestamp", 3)
    model = training.fit(rides_spec.training.model, data, split.train)
    scored = monitoring.score(model, split.holdout, rides_spec, "1")
    labelled = scored.merge(split.holdout[["station_id", "event_timestamp", data.label_column]])
    metrics = monitoring.performance(labelled, data)
    assert metrics["rmse"] == pytest.approx(training.evaluate(model, split.holdout, data)["rmse"])
    assert metrics["labelled_rows"] == len(split.holdout) and set(metrics["by_version"]) == {"1"}
    shown = {
        m["config"]["type"].rsplit(":", 1)[-1]: m["value"]
        for m in monitoring.evidently_performance(labelled, data).dict()["metrics"]
    }
    assert shown["RMSE"] == pytest.approx(metrics["rmse"]) and shown["R2Score"] == pytest.approx(metrics["r2"])
    assert shown["MAE"]["mean"] == pytest.approx(metrics["mae"])
    assert monitoring.performance(labelled.assign(rides_next_day=3.0), data) is None  # R2 needs varying labels


def test_multiclass_performance_and_evidentlys_multiclass_report_agree(demand_spec, demand_labelled):
    from airflow_mlops.steps import training

    data = demand_spec.data
    split = training.time_split(demand_labelled, "event_timestamp", 3)
    model = training.fit(demand_spec.training.model, data, split.train)
    as_pyfunc = SimpleNamespace(predict=model.predict_proba)  # what MLflow's pyfunc predict calls
    scored = monitoring.score(as_pyfunc, split.holdout, demand_spec, "1")
    scores = ["prediction", "score", "score_low", "score_medium", "score_high"]
    assert list(scored.columns) == ["station_id", "event_timestamp", *scores, "model_version"]
    labelled = scored.merge(split.holdout[["station_id", "event_timestamp", data.label_column]])
    metrics = monitoring.performance(labelled, data)
    assert metrics is not None and metrics["labelled_rows"] == len(split.holdout)
    report = monitoring.evidently_performance(labelled, data).dict()["metrics"]
    shown = {m["config"]["type"].rsplit(":", 1)[-1]: m["value"] for m in report}
    assert shown["Accuracy"] == pytest.approx(metrics["accuracy"])
    assert shown["LogLoss"] == pytest.approx(metrics["log_loss"])
    # labels of two classes only so far: our metrics, and a page saying why Evidently's report waits
    two = labelled[labelled[data.label_column] != "high"]
    assert monitoring.performance(two, data)["labelled_rows"] == len(two)
    assert "no row of class(es) high" in monitoring.performance_html(two, data)
    # a class that is not in data.classes (new in production) is left out of what is scored
    arrived = split.holdout[["station_id", "event_timestamp", data.label_column]]
    novel = arrived.assign(**{data.label_column: arrived[data.label_column].where(arrived.index % 10 != 0, "huge")})
    assert len(monitoring.known_labels(novel, data)) == int((novel.index % 10 != 0).sum())


def test_prediction_drift_watches_the_champions_scores_beside_the_features(spec, labelled, storage, tmp_path):
    """The champion's scores of a day against its scores of its own training set: still in the same world,
    moved once the customers' behaviour has shifted (SMALL's covariate shift from day 12)."""
    from airflow_mlops.contracts import Tag
    from airflow_mlops.steps import features, registry, training
    from tests.conftest import register_candidate

    target = registry.MlflowTarget(f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_location=(tmp_path / "art").as_uri())
    version = register_candidate(target, spec, labelled, "k1").version
    storage.write_parquet("training_sets/churn/reference.parquet", labelled)
    reference = storage.location("training_sets/churn/reference.parquet")
    target.client().set_model_version_tag(spec.registered_model_name, version, Tag.TRAINING_SET, reference)
    model = training.load_model(f"models:/{spec.registered_model_name}/{version}")
    verdicts = {}
    for index in (9, 15):
        snapshot = churn_data.snapshot(SMALL, index)
        features.write_offline(storage, spec, day(index), snapshot)
        storage.write_parquet(keys.predictions(spec, day(index)), monitoring.score(model, snapshot, spec, version))
        record = drift.detect(target, storage, spec, day(index), version)
        written = json.loads(storage.read_bytes(keys.report(spec, day(index), "drift.json")))
        assert written["prediction"]["column"] == "score" and written["prediction_drift"] == record["prediction_drift"]
        verdicts[index] = (record["prediction_drift"], written["prediction"]["score"])
    assert verdicts[9][0] is False and verdicts[15][0] is True, verdicts
    profile = drift.ReferenceProfile.load(storage, keys.reference_profile(spec, version))
    holdout = training.time_split(labelled, spec.data.timestamp_column, spec.training.holdout_days).holdout
    assert profile is not None and profile.prediction is not None and profile.prediction.rows == len(holdout)
