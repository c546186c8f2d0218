"""What every probe is handed: the read-only session, the server's version, the settings, and text helpers.

The session runs in autocommit, so a probe whose statement fails or times out leaves nothing behind for the
next one; `default_transaction_read_only` makes every statement read-only whatever a probe asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from dbops.backup.catalog import CatalogEntry
from dbops.config.health import HealthSettings
from dbops.config.thresholds import Thresholds
from dbops.health.counters import TempFileBaseline

Query = LiteralString | sql.SQL | sql.Composed


@dataclass
class ProbeContext:
    conn: psycopg.Connection[Any]
    settings: HealthSettings
    database: str
    now: datetime
    connect_ms: float
    newest_backup: CatalogEntry | None = None
    temp_files: TempFileBaseline | None = None  # the previous run's temp-file counters, when a state keeps them

    @property
    def thresholds(self) -> Thresholds:
        return self.settings.thresholds

    @property
    def version_num(self) -> int:
        return int(self.conn.info.server_version)

    def rows(self, query: Query, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        with self.conn.cursor(row_factory=dict_row) as cur:
            cur.execute(query, params or {})  # always a dict: every query writes a literal % as %%
            return cur.fetchall()

    def row(self, query: Query, params: dict[str, Any] | None = None) -> dict[str, Any]:
        rows = self.rows(query, params)
        return rows[0] if rows else {}
