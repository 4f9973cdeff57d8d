"""What every airflow-mlops hook shares: one connection of its own type (or an older ``generic`` one
holding the same keys as JSON extra), read once, and a Test button that reports what it reached."""

from __future__ import annotations

from functools import cached_property
from typing import Any, ClassVar

from airflow.sdk import BaseHook


class ConnectionHook(BaseHook):
    """Base of the hooks: ``conn_id`` names a connection of type ``conn_type`` or of ``accepted_types``."""

    conn_type: ClassVar[str]
    hook_name: ClassVar[str]
    default_conn_name: ClassVar[str]
    accepted_types: ClassVar[tuple[str, ...]] = ("generic",)

    def __init__(self, conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id or self.default_conn_name

    @cached_property
    def connection(self) -> Any:
        connection = self.get_connection(self.conn_id)
        if connection.conn_type not in (self.conn_type, *self.accepted_types):
            raise ValueError(
                f"connection '{self.conn_id}' has type '{connection.conn_type}'; {type(self).__name__} needs type "
                f"'{self.conn_type}' ({self.hook_name}). Edit it in the Airflow UI and pick that type, or set "
                f'"conn_type": "{self.conn_type}" in its JSON (the extra keys stay the same)'
            )
        return connection

    @cached_property
    def extra(self) -> dict[str, Any]:
        """The connection's extra fields; the UI stores the form fields there by name."""
        return dict(self.connection.extra_dejson)

    def required(self, name: str) -> Any:
        value = self.extra.get(name)
        if value in (None, ""):
            raise ValueError(f"connection '{self.conn_id}' ({self.conn_type}) needs the field '{name}'")
        return value

    def check(self) -> str:
        """Reach the service; returns what was reached, raises with what failed."""
        raise NotImplementedError

    def test_connection(self) -> tuple[bool, str]:
        """Airflow's Test button (and ``airflow connections test``)."""
        try:
            return True, self.check()
        except Exception as exc:  # the message is the answer the user sees
            return False, f"{type(exc).__name__}: {exc}"
