"""The failures this distribution raises into Airflow, so callbacks can tell them apart."""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowFailException


class BadDataFailure(AirflowFailException):
    """Bad data or a bad spec stopped the task for good: no retry, the message names the file, column or key."""
