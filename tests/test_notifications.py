"""Alerts: the SMTP and HTTP providers' notifiers against a real SMTP server and webhook on loopback."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from airflow_mlops.exceptions import BadDataFailure
from airflow_mlops.notifications import Alert, PipelineNotifier, send_alert
from airflow_mlops.spec import load_spec
from tests.conftest import ALERTS, spec_variant

DRIFT = Alert(
    "drift",
    "churn",
    "drift on 2026-01-14: 60% of features drifted",
    "drift: 60% of features drifted (limit 50%); training triggered",
    "2026-01-14",
    "http://localhost:8080/mlops/reports/reports/churn/date=2026-01-14/drift.html",
)


@pytest.fixture
def sinks(alert_sinks):
    alert_sinks.clear()
    alert_sinks.webhook_status = 200
    yield alert_sinks
    alert_sinks.webhook_status = 200


def alerting_spec(tmp_path, alerts=ALERTS):
    return load_spec(spec_variant(tmp_path, "alerting", alerts=alerts))


def test_an_alert_reaches_each_channel_subscribed_to_its_event(tmp_path, sinks):
    spec = alerting_spec(tmp_path, [ALERTS[0], {**ALERTS[1], "events": ["promotion"]}])
    assert send_alert(spec, DRIFT, {}) == []
    assert sinks.posts == []  # the webhook only takes promotions
    message = sinks.email("drift on 2026-01-14")
    assert message["Subject"] == "[churn] drift on 2026-01-14: 60% of features drifted"
    assert message["To"] == "ml-team@example.com" and message["From"] == "mlops@example.com"
    body = next(part for part in message.walk() if part.get_content_type() == "text/html").get_payload(decode=True)
    assert b"day: 2026-01-14" in body and b"limit 50%" in body and DRIFT.link.encode() in body

    promotion = Alert("promotion", "churn", "@champion promoted to v2 from v1", "passed roc_auc (by churn_training)")
    assert send_alert(spec, promotion, {}) == []
    [(path, posted)] = sinks.posts
    assert path == "/hooks/mlops"
    assert posted["text"] == "[churn] @champion promoted to v2 from v1\npassed roc_auc (by churn_training)"
    assert posted["event"] == "promotion" and posted["pipeline"] == "churn"


def test_a_channel_that_is_down_is_logged_and_skipped(tmp_path, sinks, monkeypatch, caplog):
    closed = {"conn_type": "smtp", "host": "127.0.0.1", "port": 9, "extra": {"disable_ssl": True, "retry_limit": 0}}
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DOWN", json.dumps(closed))
    down = {"channel": "smtp", "conn_id": "smtp_down", "to": ["oncall@example.com"]}
    spec = alerting_spec(tmp_path, [down, *ALERTS])
    sinks.webhook_status = 500
    assert send_alert(spec, DRIFT, {}) == ["smtp_down", "alerts_webhook"]
    assert len(sinks.emails) == 1  # the working channel still got it
    assert "alert drift of churn not sent to smtp_down" in caplog.text


def test_failures_are_bad_data_or_a_failed_task(tmp_path, sinks):
    spec_path = spec_variant(tmp_path, "alerting", alerts=ALERTS)
    validation = {"result_key": "validation/churn/raw/raw__date=2026-01-04.json", "passed": False}
    ti = SimpleNamespace(
        dag_id="churn_features",
        task_id="validate_raw",
        try_number=1,
        log_url="http://localhost:8080/log",
        xcom_pull=lambda task_ids, key: validation if key == "validation" else None,
    )
    context = {"ti": ti, "logical_date": datetime(2026, 1, 4, tzinfo=UTC)}
    notifier = PipelineNotifier(spec_path=str(spec_path))
    notifier.notify({**context, "exception": BadDataFailure("monthly_charges: 12% nulls (limit 5%)")})
    blocked = sinks.post("validation_blocked")
    assert blocked["summary"] == "bad data stopped churn_features.validate_raw" and blocked["day"] == "2026-01-04"
    assert blocked["reason"] == "monthly_charges: 12% nulls (limit 5%)"
    assert blocked["link"].endswith("/mlops/validation/validation/churn/raw/raw__date=2026-01-04.json")

    ti.task_id, ti.try_number = "publish_features", 5
    notifier.notify({**context, "exception": ConnectionError("redis down")})
    failed = sinks.post("task_failed")
    assert failed["summary"] == "churn_features.publish_features failed after 5 tries"
    assert failed["reason"] == "ConnectionError: redis down" and failed["link"] == "http://localhost:8080/log"


def test_alert_channels_are_checked_in_the_spec(tmp_path):
    from airflow_mlops.spec import SpecError

    with pytest.raises(SpecError, match="an smtp alert needs 'to'"):
        alerting_spec(tmp_path, [{"channel": "smtp", "conn_id": "smtp_default"}])
    with pytest.raises(SpecError, match=r"alerts.0.events.0"):
        alerting_spec(tmp_path, [{"channel": "webhook", "conn_id": "hook", "events": ["drfit"]}])
