"""Pipeline alerts through Airflow's notifiers: the SMTP and HTTP providers' own, one per channel of the
spec's ``alerts``.

An :class:`Alert` says what happened to which pipeline, on which day, why, and links to the evidence
(the validation result, the drift report, the model version, the task's log). The operators send the
events they decide (drift, a rejected challenger, a promotion, a rollback); :class:`PipelineNotifier`,
every task's ``on_failure_callback``, sends failures. Sending is best effort: a channel that is down is
logged and counted (the ``airflow_mlops.alerts_failed`` metric), the pipeline goes on.
"""

from __future__ import annotations

import html
import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseNotifier

from airflow_mlops.exceptions import BadDataFailure
from airflow_mlops.links import ValidationResultLink
from airflow_mlops.spec import load_spec

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlops.contracts import AliasMove
    from airflow_mlops.spec import AlertEvent, AlertSpec, PipelineSpec

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 10  # a webhook that does not answer in time counts as down


@dataclass(frozen=True)
class Alert:
    event: AlertEvent
    pipeline: str
    summary: str
    reason: str = ""
    day: str | None = None
    link: str | None = None

    @property
    def subject(self) -> str:
        return f"[{self.pipeline}] {self.summary}"

    def text(self) -> str:
        lines = [self.subject, f"day: {self.day}" if self.day else "", self.reason, self.link or ""]
        return "\n".join(line for line in lines if line)

    def html(self) -> str:
        parts = [f"<p><strong>{html.escape(self.subject)}</strong></p>"]
        if self.day:
            parts.append(f"<p>day: {html.escape(self.day)}</p>")
        if self.reason:
            parts.append(f"<p>{html.escape(self.reason)}</p>")
        if self.link:
            parts.append(f'<p><a href="{html.escape(self.link)}">{html.escape(self.link)}</a></p>')
        return "\n".join(parts)

    def payload(self) -> dict[str, Any]:
        """Slack's incoming-webhook shape (``text``), with the alert's fields for other receivers."""
        return {"text": self.text(), **asdict(self)}


def move_alert(entry: AliasMove, link: str) -> Alert:
    """The alert for a recorded alias move (a promotion, a rollback, a challenger put in shadow)."""
    came_from = f" from v{entry['previous']}" if entry["previous"] else ""
    verb = "rolled back" if entry["action"] == "rollback" else "promoted"
    summary = f"@champion {verb} to v{entry['champion']}{came_from}"
    if entry["action"] == "shadow":
        summary = f"@challenger v{entry.get('challenger')} shadows @champion v{entry['champion']}"
    return Alert(entry["action"], entry["pipeline"], summary, f"{entry['reason']} (by {entry['actor']})", link=link)


def channel_notifier(channel: AlertSpec, alert: Alert) -> BaseNotifier:
    """The provider notifier that delivers ``alert`` on ``channel``."""
    if channel.channel == "smtp":
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        return SmtpNotifier(
            to=channel.to,
            from_email=channel.from_email,
            subject=alert.subject,
            html_content=alert.html(),
            smtp_conn_id=channel.conn_id,
        )
    from airflow.providers.http.notifications.http import HttpNotifier

    return HttpNotifier(
        http_conn_id=channel.conn_id,
        endpoint=channel.endpoint,
        json=alert.payload(),
        extra_options={"timeout": SEND_TIMEOUT_S},
    )


def send_alert(spec: PipelineSpec, alert: Alert, context: Context | dict[str, Any]) -> list[str]:
    """Send ``alert`` to every channel subscribed to its event; returns the connections that failed."""
    failed = []
    for channel in spec.alerts:
        if alert.event not in channel.events:
            continue
        try:
            # notify(), not __call__: the alert is final text, not a template (a reason may hold "{{")
            channel_notifier(channel, alert).notify(context)  # type: ignore[arg-type]
        except Exception:
            log.exception(
                "alert %s of %s not sent to %s (%s)", alert.event, spec.name, channel.conn_id, channel.channel
            )
            _count_failure(alert, channel)
            failed.append(channel.conn_id)
        else:
            log.info("alert %s of %s sent to %s", alert.event, spec.name, channel.conn_id)
    return failed


def _count_failure(alert: Alert, channel: AlertSpec) -> None:
    from airflow.sdk.observability.stats import Stats

    Stats.incr(
        "airflow_mlops.alerts_failed",
        tags={"pipeline": alert.pipeline, "event": alert.event, "channel": channel.channel},
    )


class PipelineNotifier(BaseNotifier):
    """``on_failure_callback`` of a pipeline's tasks (set by the DAG factories when the spec has alerts).

    Bad input that stopped a task (:class:`~airflow_mlops.exceptions.BadDataFailure`) is
    ``validation_blocked``, linked to the GX result when the task recorded one; anything else is
    ``task_failed`` (Airflow calls this after the last retry), linked to the task's log.
    """

    template_fields = ("spec_path",)

    def __init__(self, *, spec_path: str) -> None:
        super().__init__()
        self.spec_path = spec_path

    def notify(self, context: Context) -> None:
        spec = load_spec(self.spec_path)
        ti, error = context["ti"], context.get("exception")
        logical_date = context.get("logical_date")
        day = logical_date.date().isoformat() if logical_date is not None else None
        if isinstance(error, BadDataFailure):
            validation = ti.xcom_pull(task_ids=ti.task_id, key="validation")
            has_result = isinstance(validation, dict) and validation.get("result_key")
            link = ValidationResultLink().url(validation) if has_result else ti.log_url
            alert = Alert(
                "validation_blocked", spec.name, f"bad data stopped {ti.dag_id}.{ti.task_id}", str(error), day, link
            )
        else:
            summary = f"{ti.dag_id}.{ti.task_id} failed after {ti.try_number} tries"
            alert = Alert("task_failed", spec.name, summary, f"{type(error).__name__}: {error}", day, ti.log_url)
        send_alert(spec, alert, context)
