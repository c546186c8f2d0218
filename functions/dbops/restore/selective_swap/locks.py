"""The selective swap's locks: every one it needs taken at the start of its transaction, in one order, never
waited on for long.

- **What**: EXCLUSIVE on each restored table (readers go on, writers wait), ACCESS EXCLUSIVE instead on one with
  enabled rules (the swap disables them, and ALTER TABLE ... DISABLE RULE takes it: its readers wait too), SHARE
  on each table not restored that references one (no new child row can point at a row about to go) or that one
  references (no parent row can go while the backup's rows are checked and inserted against it). Once they are
  all held the swap's row statements conflict with no other session's table locks (row locks taken by SELECT
  ... FOR UPDATE on a parent, and a REFRESH of a materialized view reading a restored table, can still wait: within
  the same lock_timeout, then the attempt is tried again).
- **Order**: by OID, the tables' identity for their whole life (a rename does not move a table in the order, as
  it would with names), as a circle: an attempt starts at the table the attempt before could not lock, and goes
  round in OID order. The application takes its locks in its own order, and its transactions enter by some
  table first (pgbench's TPC-B: accounts, then tellers, branches, history). Holding a table it reaches later
  while waiting for one it holds makes a wait cycle on every attempt under a steady load; the table the swap
  timed out on is the one the application's transactions held before the swap's, so starting there queues new
  transactions at their entrance while those already past it finish. With pgbench, the third attempt at most
  holds everything (from the entry table) within a few transactions' time.
- **How long**: the whole set within one `lock_timeout` (default 200 ms), each LOCK given what is left of it: the
  application's writers queue behind a waiting request for at most that long. It is shorter than the server's
  deadlock_timeout (1 s), so when the application locks in another order and a wait cycle forms, the swap's
  wait ends first and the application's transaction goes on. A lock timeout or a deadlock (40P01) anywhere in
  the transaction rolls it back whole; it is tried again after a backoff with jitter until the lock wait
  budget is spent, then the restore is refused for now (`RestoreBusy`) naming the sessions holding the locks.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import psycopg
from psycopg import sql

from dbops.config.durations import format_duration
from dbops.errors import RestoreBusy
from dbops.postgres.connection import describe_error
from dbops.restore.selective_swap.catalog import Keys, Staged

T = TypeVar("T")
S = TypeVar("S")
Mode = Literal["SHARE", "EXCLUSIVE", "ACCESS EXCLUSIVE"]
STRENGTH: dict[str, int] = {"SHARE": 1, "EXCLUSIVE": 2, "ACCESS EXCLUSIVE": 3}
# pg_locks' names of the modes each of ours conflicts with (PostgreSQL's table-level lock conflict table)
CONFLICTS: dict[str, list[str]] = {
    "SHARE": ["RowExclusiveLock", "ShareUpdateExclusiveLock", "ShareRowExclusiveLock", "ExclusiveLock",
              "AccessExclusiveLock"],
    "EXCLUSIVE": ["RowShareLock", "RowExclusiveLock", "ShareUpdateExclusiveLock", "ShareLock",
                  "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"],
    "ACCESS EXCLUSIVE": ["AccessShareLock", "RowShareLock", "RowExclusiveLock", "ShareUpdateExclusiveLock",
                         "ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"],
}  # fmt: skip
RETRYABLE = (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected)
BACKOFF_CAP_S = 2.0
SHOWN_BLOCKERS = 5
# sessions holding, or waiting ahead of us for, a lock that conflicts with ours on the table (or its partitions);
# what they run is not shown: a statement's text may hold secrets
HOLDERS = """
    SELECT l.pid, coalesce(a.application_name, ''), a.xact_start, a.query_start, coalesce(a.state, ''), l.mode,
           l.relation::regclass::text, l.granted
    FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'relation' AND l.pid IS DISTINCT FROM pg_backend_pid()
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND (l.relation = %(oid)s OR l.relation IN (SELECT relid FROM pg_partition_tree(%(oid)s::oid::regclass)))
      AND l.mode = ANY(%(modes)s)
    ORDER BY l.granted DESC, a.xact_start NULLS FIRST, l.pid
"""


@dataclass(frozen=True)
class LockRequest:
    oid: int
    name: str  # as regclass prints it
    mode: Mode
    only: bool  # the table alone (a restored table), or with its partitions and inheritance children

    def statement(self) -> sql.Composed:
        return sql.SQL("LOCK TABLE {}{} IN {} MODE").format(
            sql.SQL("ONLY ") if self.only else sql.SQL(""), sql.SQL(self.name), sql.SQL(self.mode)
        )

    def describe(self) -> str:
        return f"{self.mode} on {self.name}"


@dataclass(frozen=True)
class LockLimits:
    lock_timeout_s: float = 0.2  # all the locks of one attempt, together
    wait_budget_s: float = 60.0  # all attempts, backoffs included


@dataclass(frozen=True)
class Locked(Generic[T]):
    value: T
    pause_s: float  # from the first LOCK to the commit: the longest any writer of those tables waited on the swap
    attempts: int


def lock_plan(
    conn: psycopg.Connection[Any], staged: list[Staged], keys: Keys, restored: set[int], ruled: set[int]
) -> tuple[LockRequest, ...]:
    """Every lock the swap needs, one per table (the strongest it needs there), in OID order (`ruled`: the restored
    tables with enabled rules)."""
    wanted: dict[int, LockRequest] = {}

    def want(oid: int, name: str, mode: Mode, only: bool) -> None:
        held = wanted.get(oid)
        if held is None or STRENGTH[mode] > STRENGTH[held.mode]:
            wanted[oid] = LockRequest(oid, name, mode, only and (held is None or held.only))
        elif not only and held.only:
            wanted[oid] = LockRequest(oid, name, held.mode, False)

    for s in staged:
        want(s.oid, s.relation.as_string(conn), "ACCESS EXCLUSIVE" if s.oid in ruled else "EXCLUSIVE", True)
    for s in staged:
        for fk in keys.from_others(s.oid, restored):
            want(fk.table_oid, fk.table, "SHARE", False)
        for fk in keys.to_others(s.oid, restored):
            want(fk.ref_oid, fk.ref_table, "SHARE", False)
    return tuple(sorted(wanted.values(), key=lambda r: r.oid))


def _set_lock_timeout(conn: psycopg.Connection[Any], seconds: float) -> None:
    conn.execute("SELECT set_config('lock_timeout', %s, true)", [f"{max(1, int(seconds * 1000))}ms"])


def acquire(conn: psycopg.Connection[Any], plan: tuple[LockRequest, ...], timeout_s: float) -> LockRequest | None:
    """Take the plan's locks in order, all within `timeout_s`; returns the one not granted in time (the
    transaction is then aborted or holds only some: roll it back), None when all are held. The rest of the
    transaction keeps `timeout_s` as its lock_timeout."""
    deadline = time.monotonic() + timeout_s
    for request in plan:
        left = deadline - time.monotonic()
        if left < 0.001:
            return request
        _set_lock_timeout(conn, left)
        try:
            conn.execute(request.statement())
        except psycopg.errors.LockNotAvailable:
            return request
    _set_lock_timeout(conn, timeout_s)
    return None


def starting_at(plan: tuple[LockRequest, ...], oid: int | None) -> tuple[LockRequest, ...]:
    """The plan's OID order as a circle, from the table with `oid` (the whole plan as is when it has none)."""
    at = next((i for i, r in enumerate(plan) if r.oid == oid), 0)
    return plan[at:] + plan[:at]


def backoff_s(attempt: int, lock_timeout_s: float) -> float:
    """Exponential from one lock_timeout, capped, with jitter (half to all of it), so two waiting swaps or a
    swap and a burst of writers do not meet again in step."""
    return min(BACKOFF_CAP_S, lock_timeout_s * 2**attempt) * (0.5 + random.random() / 2)


def blockers(conn: psycopg.Connection[Any], request: LockRequest) -> list[str]:
    """The sessions holding (or queued ahead for) a lock on the request's table that conflicts with it."""
    rows = conn.execute(HOLDERS, {"oid": request.oid, "modes": CONFLICTS[request.mode]}).fetchall()
    conn.rollback()
    found = []
    for pid, app, xact_start, query_start, state, mode, relation, granted in rows[:SHOWN_BLOCKERS]:
        who = f"pid {pid}" if pid is not None else "a prepared transaction"
        since = ", ".join(
            part
            for part in (
                f"application_name {app!r}" if pid is not None else "",
                f"transaction since {xact_start.isoformat(timespec='seconds')}" if xact_start else "",
                f"statement since {query_start.isoformat(timespec='seconds')}" if query_start else "",
                state,
            )
            if part
        )
        found.append(f"{who} ({since}) {'holds' if granted else 'waits for'} {mode} on {relation}")
    if len(rows) > SHOWN_BLOCKERS:
        found.append(f"and {len(rows) - SHOWN_BLOCKERS} more")
    return found


def run_locked(
    conn: psycopg.Connection[Any],
    plan_of: Callable[[], tuple[tuple[LockRequest, ...], S]],
    work: Callable[[S], T],
    limits: LockLimits,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
) -> Locked[T]:
    """`work` in one transaction on `conn` that first takes the locks `plan_of()` plans, committed; tried again
    while locks are not granted in time, within the budget; RestoreBusy when it is spent (nothing changed).
    `plan_of` returns the plan and what it was planned from; it is read again once the locks are held, and
    `work` gets that second reading when it plans the same locks."""
    started = time.monotonic()
    attempts, longest = 0, 0.0
    last: LockRequest | None = None
    why = ""
    while True:
        attempts += 1
        plan, _ = plan_of()
        first_lock = time.monotonic()
        try:
            failed = acquire(conn, starting_at(plan, last.oid if last else None), limits.lock_timeout_s)
            if failed is None:
                again, found = plan_of()
                if again == plan:
                    value = work(found)
                    conn.commit()
                    return Locked(value, time.monotonic() - first_lock, attempts)
                why = "the tables' foreign keys changed while the locks were taken"
            else:
                last = failed
                why = f"{failed.describe()} not granted within {format_duration(limits.lock_timeout_s)}"
        except RETRYABLE as exc:
            why = describe_error(exc)
        conn.rollback()
        longest = max(longest, time.monotonic() - first_lock)
        delay = backoff_s(attempts, limits.lock_timeout_s)
        if time.monotonic() - started + delay + limits.lock_timeout_s > limits.wait_budget_s:
            held = blockers(conn, last) if last is not None else []
            raise RestoreBusy(
                f"{what} refused for now, nothing changed: its locks were not all granted within the lock wait "
                f"budget {format_duration(limits.wait_budget_s)} ({attempts} attempts, each waiting at most "
                f"{format_duration(limits.lock_timeout_s)}; the application's writers waited at most "
                f"{format_duration(longest)} at a time). Last: {why}. "
                + (f"Blocking: {'; '.join(held)}. " if held else "")
                + "Try again once those sessions have ended."
            )
        sleep(delay)
