"""Selective swap: replace chosen tables' rows in the live target from the scratch copy, in one transaction that the
application barely notices.

1. **Stage**, no lock held: the backup's rows travel by COPY into temporary tables on the target (`staging`).
2. **Rehearse**, no lock held: foreign keys are checked both ways (`foreign_key_checks`), so a refusal holds
   nothing, and the rows the swap would change are counted; the time the locks would be held is estimated from
   them (the reads timed here, the writes at the rate the rows were staged). Over `max_pause`, the restore is
   refused (`PauseTooLong`) before any lock is taken.
3. **Swap**, under locks taken all up front in OID order within one short lock_timeout, retried with backoff
   until the lock wait budget is spent (`swap_locks`): the foreign keys checked again, rows missing from the
   backup deleted (children first), the backup's rows updated or inserted by key (parents first), with the
   target's own triggers and rules disabled meanwhile (pg_restore, too, loads rows before triggers exist) and
   enabled again before the commit; materialized views reading a restored table refreshed in the same
   transaction (`row_changes`). The time the locks were held is measured and returned: the pause the
   application's writers saw.

If anything fails, the transaction rolls back and the target is exactly as it was.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from dbops.config.durations import format_duration
from dbops.errors import DatabaseError, PauseTooLong, RestoreBusy
from dbops.postgres.connection import ConnectionSpec, connect, describe_error
from dbops.restore.models import TablePlan
from dbops.restore.selective_swap import row_changes
from dbops.restore.selective_swap.catalog import Keys, Staged, foreign_keys, parents_first, relation_oid, with_rules
from dbops.restore.selective_swap.foreign_keys import check_children, check_parents
from dbops.restore.selective_swap.locks import LockLimits, LockRequest, lock_plan, run_locked
from dbops.restore.selective_swap.staging import stage

# a row changed in a live table (WAL, its indexes, the foreign keys' trigger checks) is taken to cost this many
# times a row copied into an unlogged, unindexed temporary table by COPY: an estimate, not measured. In
# bench/swap_pause.py's runs (1.1 % of the rows changed) the writes were under a tenth of the estimate, the timed
# comparisons the rest, so those runs do not calibrate it
WRITE_COST_FACTOR = 4.0


@dataclass(frozen=True)
class SwapLimits:
    lock_timeout_s: float = 0.2
    lock_wait_budget_s: float = 60.0
    max_pause_s: float = 5.0


@dataclass
class SwapResult:
    rows: dict[str, int]
    refreshed_views: list[str]
    pause_s: float = 0.0  # how long the swap held its locks: the longest the application's writers waited on it
    estimated_pause_s: float = 0.0
    changed_rows: int = 0
    lock_attempts: int = 1


@dataclass(frozen=True)
class Estimate:
    changed_rows: int
    pause_s: float


def _check_keys(conn: psycopg.Connection[Any], staged: list[Staged], keys: Keys, restored: set[int]) -> None:
    for s in staged:
        check_parents(conn, s, keys.to_others(s.oid, restored))
        check_children(conn, s, keys.from_others(s.oid, restored))


def _rehearse(
    conn: psycopg.Connection[Any], staged: list[Staged], keys: Keys, restored: set[int], copy_s: float
) -> Estimate:
    """The swap's checks and the rows it would change, read without its locks (a refusal here holds none); the
    time the locks would be held estimated from them."""
    started = time.monotonic()
    _check_keys(conn, staged, keys, restored)
    changed = sum(row_changes.count_changes(conn, s) for s in staged)
    reads_s = time.monotonic() - started
    conn.commit()
    per_row_s = copy_s / max(1, sum(s.rows for s in staged))
    return Estimate(changed, reads_s + changed * per_row_s * WRITE_COST_FACTOR)


def _swap_rows(conn: psycopg.Connection[Any], staged: list[Staged], keys: Keys, restored: set[int]) -> list[str]:
    """Under the locks: checks again, then the rows; returns the materialized views refreshed."""
    for s in staged:
        check_parents(conn, s, keys.to_others(s.oid, restored))
    enable_again = [statement for s in staged for statement in row_changes.quiet(conn, s)]
    for s in reversed(staged):  # children first: rows the backup does not have
        check_children(conn, s, keys.from_others(s.oid, restored))
        row_changes.delete_missing(conn, s)
    for s in staged:  # parents first: the backup's rows, inserted or put back as they were
        row_changes.put_back(conn, s)
        row_changes.advance_sequences(conn, s.oid)
    for statement in enable_again:
        conn.execute(statement)
    return row_changes.refresh_views(conn, sorted(restored))


def _counts(conn: psycopg.Connection[Any], staged: list[Staged]) -> dict[str, int]:
    counts = {}
    for s in staged:
        row = conn.execute(sql.SQL("SELECT count(*) FROM ONLY {}").format(s.relation)).fetchone()
        counts[s.plan.qualified] = int(row[0]) if row else 0
    conn.commit()
    return counts


def swap_tables(
    scratch: ConnectionSpec, target: ConnectionSpec, tables: list[TablePlan], limits: SwapLimits | None = None
) -> SwapResult:
    """Make the target's `tables` hold exactly the scratch copy's rows; returns rows per table afterwards (counted
    after the commit) and the pause the swap's locks made."""
    limits = limits or SwapLimits()
    names = ", ".join(t.qualified for t in tables)
    what = f"swap of {names} into {target.dbname}"
    with (
        connect(scratch, statement_timeout_ms=0) as src,
        connect(target, autocommit=False, statement_timeout_ms=0) as dst,
    ):
        try:
            for conn in (src, dst):  # every row moves; a role that row-level security would filter fails
                conn.execute("SET row_security = off")
            dst.commit()
            restored = {relation_oid(dst, t) for t in tables}
            started = time.monotonic()
            staged = [stage(src, dst, t, i) for i, t in enumerate(t for t in tables if t.holds_rows)]
            copy_s = time.monotonic() - started
            oids = [s.oid for s in staged]
            keys = foreign_keys(dst, oids)
            staged = parents_first(dst, staged, keys)
            estimate = _rehearse(dst, staged, keys, restored, copy_s)
            if estimate.pause_s > limits.max_pause_s:
                raise PauseTooLong(
                    f"{what} refused, nothing changed: it would change {estimate.changed_rows} rows and hold the "
                    f"application's writes on those tables for about {format_duration(estimate.pause_s)}, more "
                    f"than restore.max_pause {format_duration(limits.max_pause_s)}: restore in a quiet hour with a "
                    "larger max_pause, or restore the whole database into a new one (--target) and copy from there"
                )

            def plan() -> tuple[tuple[LockRequest, ...], Keys]:  # the keys read again under the locks: one query
                now = foreign_keys(dst, oids)
                return lock_plan(dst, staged, now, restored, with_rules(dst, oids)), now

            locked = run_locked(
                dst,
                plan,
                lambda keys_now: _swap_rows(dst, staged, keys_now, restored),
                LockLimits(limits.lock_timeout_s, limits.lock_wait_budget_s),
                what,
            )
            return SwapResult(
                rows=_counts(dst, staged),
                refreshed_views=locked.value,
                pause_s=round(locked.pause_s, 4),
                estimated_pause_s=round(estimate.pause_s, 4),
                changed_rows=estimate.changed_rows,
                lock_attempts=locked.attempts,
            )
        except psycopg.Error as exc:
            dst.rollback()
            detail = exc.diag.message_detail if isinstance(exc, psycopg.errors.IntegrityError) else None
            raise DatabaseError(
                f"{what} rolled back: {describe_error(exc)}" + (f" ({detail})" if detail else "")
            ) from None
        except (RestoreBusy, PauseTooLong):
            dst.rollback()
            raise
        except DatabaseError as exc:
            dst.rollback()
            raise DatabaseError(f"{what} rolled back: {exc}") from None
        except BaseException:
            dst.rollback()
            raise
