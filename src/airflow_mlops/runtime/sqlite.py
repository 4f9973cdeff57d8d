"""Airflow's metadata database on SQLite, shared by several processes (the embedded stack): select with
``AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS=airflow_mlops.runtime.sqlite.SQLITE_CONNECT_ARGS``."""

from __future__ import annotations

import sqlite3
from typing import Any


class _ImmediateCursor(sqlite3.Cursor):
    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:  # type: ignore[override]
        if not self.connection.in_transaction and sql.lstrip()[:9].upper() == "SAVEPOINT":
            super().execute("BEGIN IMMEDIATE")
        return super().execute(sql, parameters)


class ImmediateConnection(sqlite3.Connection):
    """Every transaction takes SQLite's write lock up front (``BEGIN IMMEDIATE``), savepoints included.

    Four Airflow components and the CLI share one SQLite file; a deferred transaction that read first
    and writes later fails at once with "database is locked" when another process wrote in between.
    Taking the lock up front turns that into a wait, bounded by the connection's ``timeout``.
    """

    def cursor(self, factory: Any = _ImmediateCursor) -> sqlite3.Cursor:  # type: ignore[override]
        return super().cursor(factory)


SQLITE_CONNECT_ARGS = {"timeout": 60, "isolation_level": "IMMEDIATE", "factory": ImmediateConnection}
