from pathlib import Path

import pytest
import yaml

from airflow_mlops.dev.cli import main
from airflow_mlops.spec import SpecError, load_spec
from tests.conftest import SPEC_PATH


def write_spec(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load(SPEC_PATH.read_text())
    mutate(raw)
    for key in ("raw_suite",):
        raw["features"][key] = str((SPEC_PATH.parent / raw["features"][key]).resolve())
    raw["training"]["training_suite"] = str((SPEC_PATH.parent / raw["training"]["training_suite"]).resolve())
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_demo_spec_is_valid_and_resolves_suites(spec):
    import hashlib

    assert spec.name == "churn"
    assert spec.digest == hashlib.sha256(SPEC_PATH.read_bytes()).hexdigest()  # which spec made what
    assert spec.features.raw_suite.is_file() and spec.features.raw_suite.is_absolute()
    assert spec.data.categorical == ["contract_type", "region"]
    assert spec.registered_model_name == "churn_model"
    assert spec.dag_id("monitoring") == "churn_monitoring"


def test_a_regression_pipeline_takes_its_own_metrics_and_trainers(rides_spec, tmp_path):
    assert rides_spec.data.task == "regression" and rides_spec.training.primary_metric == "rmse"

    def regression(raw):  # the demo turned regression, primary metric left to its default
        raw["data"]["task"] = "regression"
        del raw["training"]["primary_metric"]
        raw["training"]["thresholds"] = {"rmse": {"threshold": 10}}
        raw["monitoring"]["drift"]["min_performance"] = {"r2": 0.4}

    assert load_spec(write_spec(tmp_path, regression)).training.primary_metric == "rmse"


def test_a_multiclass_pipeline_names_its_classes(demand_spec, tmp_path):
    assert demand_spec.data.classes == ["low", "medium", "high"]

    def multiclass(raw):  # the demo's label as three classes, primary metric left to its default
        raw["data"].update(task="multiclass", classes=[0, 1, 2])
        del raw["training"]["primary_metric"]
        raw["training"]["thresholds"] = {"f1_macro": {"threshold": 0.5}, "log_loss": {"threshold": 0.9}}
        raw["monitoring"]["drift"]["min_performance"] = {"roc_auc_ovr": 0.7}

    assert load_spec(write_spec(tmp_path, multiclass)).training.primary_metric == "f1_macro"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda raw: raw["data"].update(task="regression"),
            r"training.primary_metric: roc_auc is not a regression metric "
            r"\(data.task: regression; use rmse, mae, r2, mape\)",
        ),
        (
            lambda raw: (raw["data"].update(task="regression"), raw["training"].update(primary_metric="rmse")),
            r"training.thresholds: roc_auc is not a regression metric",
        ),
        (
            lambda raw: raw["monitoring"]["drift"].update(min_performance={"rmse": 3.0}),
            r"monitoring.drift.min_performance: rmse is not a binary metric \(data.task: binary; use roc_auc, ",
        ),
        (
            lambda raw: raw["training"]["model"].update(trainer="sklearn_ridge", params={}),
            r"training.model.trainer sklearn_ridge does not learn binary tasks \(data.task: binary; use "
            r"sklearn_gradient_boosting, sklearn_logistic_regression, torch_mlp\)",
        ),
        (
            lambda raw: raw["data"].update(task="ranking"),
            r"'data.task': Input should be 'binary', 'multiclass' or 'regression'",
        ),
        (
            lambda raw: raw["data"].update(task="multiclass"),
            r"'data': Value error, a multiclass task needs data.classes: its label's values, at least 3 and each "
            r"once \(got \[\]; two classes are a binary task, labelled 0 and 1\)",
        ),
        (
            lambda raw: raw["data"].update(task="multiclass", classes=["a", "b", "a"]),
            r"a multiclass task needs data.classes.*\(got \['a', 'b', 'a'\]",
        ),
        (lambda raw: raw["data"].update(classes=[0, 1]), r"data.classes is for a multiclass task, not binary"),
        (
            lambda raw: raw["data"].update(task="multiclass", classes=["a", "b", "c"]),
            r"training.primary_metric: roc_auc is not a multiclass metric \(data.task: multiclass; use f1_macro, "
            r"accuracy, log_loss, roc_auc_ovr\)",
        ),
    ],
)
def test_a_task_its_metrics_and_trainer_must_fit_together(tmp_path, mutate, message):
    with pytest.raises(SpecError, match=message):
        load_spec(write_spec(tmp_path, mutate))


def test_unknown_key_names_file_key_and_allowed_keys(tmp_path):
    path = write_spec(tmp_path, lambda raw: raw["training"].update(windw_days=3))
    with pytest.raises(SpecError) as error:
        load_spec(path)
    message = str(error.value)
    assert str(path) in message
    assert "training.windw_days" in message
    assert "window_days" in message  # what is allowed


def test_bad_value_lists_allowed_values(tmp_path):
    path = write_spec(tmp_path, lambda raw: raw["training"]["model"].update(trainer="xgboost"))
    with pytest.raises(SpecError, match=r"training\.model\.trainer.*sklearn_gradient_boosting.*'xgboost'"):
        load_spec(path)


def test_missing_key_and_bad_schedule(tmp_path):
    def mutate(raw):
        del raw["data"]["entity_key"]
        raw["monitoring"]["schedule"] = "every day"

    with pytest.raises(SpecError) as error:
        load_spec(write_spec(tmp_path, mutate))
    assert "missing required key 'data.entity_key'" in str(error.value)
    assert "monitoring.schedule" in str(error.value) and "cron" in str(error.value)


def test_cross_references_are_checked(tmp_path):
    path = write_spec(tmp_path, lambda raw: raw["monitoring"]["drift"].update(key_features=["price"]))
    with pytest.raises(SpecError, match=r"key_features \['price'\] are not features"):
        load_spec(path)


def test_missing_suite_file_and_bad_yaml(tmp_path):
    path = write_spec(tmp_path, lambda raw: raw["features"].update(raw_suite=str(tmp_path / "nope.json")))
    with pytest.raises(SpecError, match="expectation suite file not found"):
        load_spec(path)
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(broken)


def test_cli_validate_exit_codes(tmp_path, capsys):
    assert main(["validate", str(SPEC_PATH)]) == 0
    bad = write_spec(tmp_path, lambda raw: raw.update(name="Churn Model"))
    assert main(["validate", str(SPEC_PATH), str(bad)]) == 1
    assert "name" in capsys.readouterr().err


def test_threshold_entries_are_checked(tmp_path):
    path = write_spec(tmp_path, lambda raw: raw["training"]["thresholds"].update(roc_auc={"treshold": 0.7}))
    with pytest.raises(SpecError) as error:
        load_spec(path)
    assert "training.thresholds.roc_auc.treshold" in str(error.value)
    assert "min_absolute_change" in str(error.value)  # the allowed keys are listed
    path = write_spec(tmp_path, lambda raw: raw["training"]["thresholds"].update(roc_auc={}))
    with pytest.raises(SpecError, match="set at least one of threshold"):
        load_spec(path)


@pytest.mark.parametrize("queue", ["", " gpu", "gpu queue"])
def test_training_queue_must_be_a_queue_name(tmp_path, queue):
    path = write_spec(tmp_path, lambda raw: raw["training"].update(queue=queue))
    with pytest.raises(SpecError, match=rf"{path}.*\n.*'training\.queue'.*\(got '{queue}'\)"):
        load_spec(path)


def second_pipeline(raw: dict, name: str = "upsell", **shared: str) -> None:
    """The demo spec as a second pipeline of the same stack: its own name, paths and feature view, unless
    ``shared`` says which of them it keeps from the first (by key path)."""
    raw["name"] = name
    raw["features"]["feature_view"] = f"{name}_features"
    raw["monitoring"]["predictions_path"] = f"predictions/{name}"
    raw["monitoring"]["reports_path"] = f"reports/{name}"
    for path, value in shared.items():
        section, key = path.split(".")
        raw[section][key] = value


def pipelines(tmp_path: Path, **shared: str) -> Path:
    """A folder with the demo spec and a second pipeline (sharing ``shared`` with the first)."""
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "churn.yaml").write_text(write_spec(tmp_path, lambda raw: None).read_text())
    (folder / "upsell.yaml").write_text(write_spec(tmp_path, lambda raw: second_pipeline(raw, **shared)).read_text())
    return folder


def test_a_folder_of_pipelines_loads_when_they_write_to_places_of_their_own(tmp_path, capsys):
    from airflow_mlops.spec import load_specs

    specs = load_specs(pipelines(tmp_path))
    assert [s.name for s in specs] == ["churn", "upsell"]
    assert {s.registered_model_name for s in specs} == {"churn_model", "upsell_model"}
    assert main(["validate", str(tmp_path / "pipelines")]) == 0
    assert "upsell.yaml: upsell_features, upsell_training" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    with pytest.raises(SpecError, match="empty: no pipeline spec"):
        load_specs(tmp_path / "empty")


@pytest.mark.parametrize(
    ("shared", "key"),
    [
        ({"features.feature_view": "customer_features"}, "features.feature_view 'customer_features'"),
        ({"monitoring.reports_path": "reports/churn"}, "monitoring.reports_path 'reports/churn'"),
        ({"training.registered_model": "churn_model"}, "training.registered_model 'churn_model'"),
    ],
)
def test_pipelines_of_one_stack_may_not_write_to_each_other_s_places(tmp_path, capsys, shared, key):
    from airflow_mlops.spec import load_specs

    folder = pipelines(tmp_path, **shared)
    with pytest.raises(SpecError, match=rf"upsell.yaml and .*churn.yaml share {key}: pipelines on one stack"):
        load_specs(folder)
    assert main(["validate", str(folder)]) == 1
    assert f"share {key}" in capsys.readouterr().err


def test_pipelines_folders_may_not_nest_in_each_other(tmp_path):
    from airflow_mlops.spec import load_specs

    folder = pipelines(tmp_path, **{"monitoring.predictions_path": "reports/churn/scores"})
    with pytest.raises(SpecError, match=r"overlap: monitoring.predictions_path 'reports/churn/scores' and"):
        load_specs(folder)


SEARCH = {"space": {"max_depth": {"type": "int", "low": 2, "high": 8}}, "trials": 6, "parallel": 4}


def test_a_search_is_planned_in_rounds_on_its_queue(tmp_path):
    spec = load_spec(write_spec(tmp_path, lambda raw: raw["training"].update(search=SEARCH, queue="gpu")))
    assert spec.training.search is not None and spec.training.search.rounds == 2
    assert spec.training.trials_queue == "gpu"  # training.queue's, unless search.queue says otherwise


@pytest.mark.parametrize(
    ("search", "message"),
    [
        (
            {"space": {"learning_rate": {"type": "float", "low": 0.01, "high": 0.3}}},
            r"training.search.space learning_rate also set in training.model.params: search a parameter or fix it",
        ),
        (
            {**SEARCH, "validation_days": 17},
            r"training.search.validation_days \(17\) and training.holdout_days \(4\) must leave days to train on "
            r"in training.window_days \(21\)",
        ),
        (
            {"space": {"max_depth": {"type": "float", "low": 3, "high": 2}}},
            r"'training.search.space.max_depth': Value error, a float range needs low < high",
        ),
        (
            {"space": {"max_depth": {"type": "int", "low": 2, "high": 8, "choices": [2, 3]}}},
            r"an int range takes low and high, not choices \(use type: categorical\)",
        ),
        (
            {"space": {"l2_regularization": {"type": "float", "low": 0, "high": 1, "log": True}}},
            r"'training.search.space.l2_regularization': Value error, a log range needs low > 0 \(got 0\)",
        ),
        ({"space": {"early_stopping": {"type": "categorical", "choices": [True]}}}, r"two or more 'choices'"),
        (
            {"space": {"max_depth": {"type": "int", "low": 2, "high": 8, "step": 7}}},
            r"step 7 leaves one value between 2 and 8",
        ),
        (
            {"space": {"max_depth": {"type": "float", "low": 3, "high": 2}}},
            r"a float range needs low < high \(got low 3.0, high 2.0\)",
        ),
        ({"space": {}}, r"'training.search.space': Dictionary should have at least 1 item"),
        ({**SEARCH, "sampler": "grid"}, r"'training.search.sampler': Input should be 'tpe' or 'random'"),
    ],
)
def test_a_search_space_that_cannot_be_sampled_names_its_key(tmp_path, search, message):
    with pytest.raises(SpecError, match=message):
        load_spec(write_spec(tmp_path, lambda raw: raw["training"].update(search=search)))
