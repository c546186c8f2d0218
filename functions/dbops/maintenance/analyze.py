"""analyze: ANALYZE table by table (weekly), whatever the statistics say."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from dbops.config.maintenance import MaintenanceConfig
from dbops.maintenance import objects
from dbops.maintenance.base import Planned, StatementJob
from dbops.maintenance.models import ObjectKind
from dbops.text import human_age

ANALYZE = sql.SQL("ANALYZE")


class AnalyzeJob(StatementJob):
    def command(self, kind: ObjectKind, version: int) -> sql.SQL:
        return ANALYZE

    def plan(self, conn: psycopg.Connection[Any], config: MaintenanceConfig, version: int) -> Planned:
        found = []
        now = datetime.now(UTC)
        for t in objects.list_tables(conn, config.schemas):
            last = (
                f"last analyzed {human_age((now - t.last_analyze).total_seconds())} ago"
                if t.last_analyze
                else "never analyzed"
            )
            reason = f"weekly statistics refresh; {last}, {t.modified_since_analyze} rows changed since"
            found.append(self.planned_table(version, t, reason))
        return found, []
