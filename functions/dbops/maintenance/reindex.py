"""reindex: REINDEX INDEX CONCURRENTLY on bloated indexes (or all), never REINDEX DATABASE (monthly)."""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg import sql

from dbops.config.maintenance import MaintenanceConfig
from dbops.errors import GiveUp
from dbops.maintenance import objects
from dbops.maintenance.base import Planned, RunContext, Statement, StatementJob
from dbops.maintenance.models import ObjectKind, PlannedObject
from dbops.maintenance.runner import RETRYABLE, lock_reason
from dbops.postgres.connection import describe_error
from dbops.text import human_bytes, plural

CONCURRENT_REINDEX_SINCE = 120000
LEFTOVER = re.compile(r"_cc(new|old)[0-9]*$")

REINDEX = sql.SQL("REINDEX INDEX CONCURRENTLY")
DROP_LEFTOVER = sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS")

INVALID_INDEXES = sql.SQL("""
SELECT ic.oid, ic.relname FROM pg_index ix
JOIN pg_class ic ON ic.oid = ix.indexrelid
JOIN pg_class tc ON tc.oid = ix.indrelid
JOIN pg_namespace n ON n.oid = tc.relnamespace
WHERE n.nspname = %s AND tc.relname = %s AND NOT ix.indisvalid
""")


class ReindexJob(StatementJob):
    """Invalid indexes are skipped; the invalid `_ccnew`/`_ccold` leftovers of an interrupted concurrent reindex
    are dropped first, and a reindex that fails drops the leftover it made."""

    def command(self, kind: ObjectKind, version: int) -> sql.SQL:
        return DROP_LEFTOVER if kind == "leftover" else REINDEX

    def lock_timeout_s(self, config: MaintenanceConfig) -> float:
        # REINDEX CONCURRENTLY waits for the transactions on the table; those waits block no reader or writer
        return config.reindex_lock_timeout_s

    def plan(self, conn: psycopg.Connection[Any], config: MaintenanceConfig, version: int) -> Planned:
        if version < CONCURRENT_REINDEX_SINCE:
            return [], [
                "REINDEX CONCURRENTLY needs PostgreSQL 12 or later; a blocking REINDEX is never run: nothing to do"
            ]
        leftovers, rebuilds, no_estimate = [], [], 0
        indexes = objects.list_indexes(conn, config.schemas)
        for ix in indexes:
            exclusion = "exclusion constraint: cannot be rebuilt concurrently" if ix.constraint == "x" else None
            if not ix.valid and LEFTOVER.search(ix.name):
                running = "an index build is running on the table right now" if ix.build_running else None
                reason = "invalid leftover of an interrupted REINDEX CONCURRENTLY"
                leftovers.append(self._index(version, ix, "leftover", reason, running))
            elif not ix.valid:
                skip = "invalid index (a failed CREATE INDEX CONCURRENTLY?): rebuild or drop it by hand"
                rebuilds.append(self._index(version, ix, "index", "invalid index", skip))
            elif config.reindex_mode == "full":
                rebuilds.append(self._index(version, ix, "index", f"full pass, {human_bytes(ix.bytes)}", exclusion))
            elif ix.bloat_ratio is None:
                no_estimate += 1
            elif ix.bloat_ratio >= config.reindex_bloat_ratio and ix.bytes >= config.reindex_min_bytes:
                reason = f"estimated bloat {ix.bloat_ratio:.0%} of {human_bytes(ix.bytes)}"
                rebuilds.append(self._index(version, ix, "index", reason, exclusion))
        notes = [f"{plural(len(indexes), 'index')} considered, mode {config.reindex_mode}"]
        if config.reindex_mode == "bloat":
            notes.append(
                f"bloat mode: B-tree indexes of at least {human_bytes(config.reindex_min_bytes)} estimated "
                f"≥ {config.reindex_bloat_ratio:.0%} bloated"
            )
            if no_estimate:
                notes.append(f"{plural(no_estimate, 'index')} without an estimate (not B-tree, or never analyzed)")
        return leftovers + rebuilds, notes

    def _index(
        self, version: int, ix: objects.IndexInfo, kind: ObjectKind, reason: str, skip: str | None
    ) -> PlannedObject:
        return self.planned(
            version, kind=kind, schema_name=ix.schema, name=ix.name, table=ix.table, reason=reason, skip_reason=skip
        )

    def execute(self, ctx: RunContext, obj: PlannedObject, statement: Statement, lock_s: float) -> None:
        if obj.kind != "index":
            super().execute(ctx, obj, statement, lock_s)
            return
        session = ctx.session
        assert obj.table is not None
        session.set_timeouts(lock_s, ctx.config.statement_timeout_s)
        before = {r[0] for r in session.conn.execute(INVALID_INDEXES, [obj.schema_name, obj.table]).fetchall()}
        try:
            session.conn.execute(statement.composed)
        except psycopg.Error as exc:
            left = self._drop_own_leftovers(ctx, obj, before, lock_s)
            if not left:
                raise
            # retrying now would only add another leftover next to the one we could not drop
            leftover = (
                f"its invalid {', '.join(left)} could not be dropped yet (same wait): the next reindex run drops it"
            )
            if isinstance(exc, RETRYABLE):
                raise GiveUp("skipped", f"{lock_reason(exc, lock_s)}; {leftover}") from None
            raise GiveUp("failed", f"{describe_error(exc)}; {leftover}") from None

    def _drop_own_leftovers(self, ctx: RunContext, obj: PlannedObject, before: set[int], lock_s: float) -> list[str]:
        """A failed REINDEX CONCURRENTLY leaves its invalid new index behind: drop it now. Returns those still there."""
        session = ctx.session
        left = []
        try:
            rows = session.conn.execute(INVALID_INDEXES, [obj.schema_name, obj.table]).fetchall()
        except psycopg.Error:
            return []  # the session is gone; the next plan finds any leftover by name
        for oid, name in rows:
            if oid in before or not LEFTOVER.search(name):
                continue
            try:
                session.set_timeouts(lock_s, ctx.config.statement_timeout_s)
                session.conn.execute(Statement(DROP_LEFTOVER, sql.Identifier(obj.schema_name, name)).composed)
            except psycopg.Error:
                left.append(name)
        return left
