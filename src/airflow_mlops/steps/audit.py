"""The audit trail of ``@champion``: who moved it, when, why, from which version to which.

MLflow keeps only where an alias points now. Every move (a promotion by the training pipeline, a
rollback from the CLI or the rollback DAG) is written here as its own JSON file in the lake, under
:func:`airflow_mlops.keys.alias_move`. An event id names the file: a retried task writes the same file
again, two writers never touch each other's.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from airflow_mlops import keys

if TYPE_CHECKING:
    from airflow_mlops.contracts import AliasMove
    from airflow_mlops.spec import PipelineSpec
    from airflow_mlops.steps.registry import Promotion
    from airflow_mlops.storage import Storage


def event_id(*parts: str) -> str:
    """A file-name-safe id from what identifies a move (e.g. action, DAG id and run id)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(parts)).strip("_")


def unique_event_id(action: str) -> str:
    """An id for a move nothing else identifies (the CLI): its time, to the microsecond."""
    return event_id(datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ"), action)


def move(
    spec: PipelineSpec,
    promotion: Promotion,
    *,
    action: str,
    actor: str,
    source: str,
    event: str,
    challenger: str | None = None,
) -> AliasMove:
    """The record of a move that happened (``promotion.champion`` is the version now champion;
    ``challenger``, the version put in shadow)."""
    assert promotion.champion is not None, "an alias move always has a champion"
    return {
        "event_id": event,
        "at": datetime.now(UTC).isoformat(timespec="microseconds"),
        "pipeline": spec.name,
        "model": spec.registered_model_name,
        "action": action,
        "champion": promotion.champion,
        "previous": promotion.previous,
        "challenger": challenger,
        "reason": promotion.reason,
        "actor": actor,
        "source": source,
    }


def record(storage: Storage, spec: PipelineSpec, entry: AliasMove) -> str:
    """Append ``entry`` to the trail; returns its key."""
    key = keys.alias_move(spec, entry["event_id"])
    storage.write_bytes(key, json.dumps(entry, indent=2).encode())
    return key


def trail(storage: Storage, spec: PipelineSpec) -> list[AliasMove]:
    """Every recorded move of the pipeline's champion, newest first."""
    entries: list[AliasMove] = [
        json.loads(storage.read_bytes(key)) for key in storage.files(keys.audit_prefix(spec), ".json")
    ]
    return sorted(entries, key=lambda e: (e["at"], e["event_id"]), reverse=True)
