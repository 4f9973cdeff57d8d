from __future__ import annotations

import pytest

from airflow_mlops.dev.demo import MARKER, Plan, fresh_home


def test_demo_home_is_reset_only_when_it_is_a_demo_home(tmp_path):
    home = tmp_path / "demo"
    fresh_home(home)
    (home / "airflow.db").write_text("old run")
    fresh_home(home)  # a second demo starts from day one
    assert [p.name for p in home.iterdir()] == [MARKER]

    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    with pytest.raises(SystemExit, match="not a demo folder"):
        fresh_home(other)
    assert (other / "notes.txt").read_text() == "keep"


def test_plan_puts_both_shifts_after_the_first_champion():
    plan = Plan()
    assert plan.first_training_day < plan.covariate_shift_day < plan.concept_shift_day < plan.days
    assert (plan.covariate_shift_day, plan.concept_shift_day) == (33, 46)


def test_cli_works_on_the_project_folder_it_is_given(tmp_path, capsys):
    from airflow_mlops.dev.cli import main

    assert main(["env", "--project", str(tmp_path), "--home", "stack"]) == 0
    exports = dict(line.removeprefix("export ").split("=", 1) for line in capsys.readouterr().out.splitlines())
    assert exports["AIRFLOW__CORE__DAGS_FOLDER"] == str(tmp_path / "dags")
    assert exports["AIRFLOW_HOME"] == str(tmp_path / "stack" / "airflow")  # --home is relative to the project


def test_stack_secrets_are_readable_by_their_owner_only(tmp_path):
    import os
    import stat

    from airflow_mlops.dev.embedded import embedded_env
    from tests.conftest import ROOT

    previous = os.umask(0o022)  # the usual umask: files readable by everyone unless told otherwise
    try:
        embedded_env(tmp_path, project=ROOT)
    finally:
        os.umask(previous)
    for name in ("jwt_secret", "passwords.json"):
        assert stat.S_IMODE((tmp_path / "airflow" / name).stat().st_mode) == 0o600, name
