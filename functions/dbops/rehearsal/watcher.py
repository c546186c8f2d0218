"""Watch the command's sessions on the scratch database: what each statement ran, which locks it took and for how
long, and which it waited for.

A thread with its own connection samples `pg_stat_activity` joined with `pg_locks` every `interval` seconds: the
scratch database's client sessions other than its own and the ones it is told to leave out (the rehearsal's
keeper); autovacuum and other background workers are not the command's. Times are the server's (`now()` of each
sample, `query_start`, `state_change`), one clock for everything.

- A *statement* is (pid, query_start, query). It ran from query_start to its `state_change` once a sample sees the
  session past it (exact), else to the last sample that saw it running (an estimate).
- A *lock hold* is (pid, transaction start, relation, mode) granted. A lock is held until its transaction ends,
  which is often several statements later (Alembic runs a whole upgrade in one transaction): it is credited to
  the statement the session was running, or had last run, when the lock was first seen, and it is said whether
  that statement surely took it (it was running at the sample before, or it began its transaction; the analysis
  also trusts a statement that names the table). Its time is bounded by the samples: at least last seen - first
  seen, at most the sample after it went minus the sample before it came; `held_s` is the middle of the two and
  `uncertainty_s` half their difference (about an interval).
- A *wait* is a lock not granted: the statement waited for it (behind `pg_blocking_pids`).

A rewrite's new storage (a transient table, its TOAST, new indexes) is in no catalog another session can read
until its transaction commits, and a table rewritten twice keeps only the second's: each sample also notes the
storage committed rewrites gave their tables (`pg_class.relfilenode` and TOAST against the table's OID), so that a
lock on the first's storage can still be named after its table.

Only relations of the database count (OID >= 16384, the first user OID): the catalogs' own locks are
PostgreSQL's housekeeping. Sizes are never read while sampling: `pg_relation_size` would wait behind the very
lock being measured.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from dbops.postgres.connection import ConnectionSpec, describe_error

FIRST_USER_OID = 16384

SAMPLE = """
SELECT t.now, s.*
FROM (SELECT now()) t
LEFT JOIN LATERAL (
    SELECT a.pid, a.state, a.query_start, a.state_change, a.xact_start, a.query,
           l.relation::int8, l.mode, l.granted,
           CASE WHEN a.wait_event_type = 'Lock' THEN pg_blocking_pids(a.pid) END
    FROM pg_stat_activity a
    LEFT JOIN pg_locks l
           ON l.pid = a.pid AND l.locktype = 'relation' AND l.relation >= %(first_oid)s
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    WHERE a.datname = current_database() AND a.backend_type = 'client backend'
      AND a.pid <> pg_backend_pid() AND a.pid <> ALL(%(exclude)s::int[])
) s ON true
"""

# tables whose storage a committed rewrite replaced (relfilenode no longer the OID): their heap's, TOAST's and TOAST
# index's OIDs; and indexes made since the watcher started (a rewrite builds its table's indexes again): a handful of
# rows, read at a sample whose sessions' statements or locks changed since the one before (a commit shows then)
STORAGE = """
SELECT c.oid::int8, c.relfilenode::int8, c.reltoastrelid::int8,
       (SELECT x.indexrelid::int8 FROM pg_index x WHERE c.reltoastrelid <> 0 AND x.indrelid = c.reltoastrelid LIMIT 1)
FROM pg_class c
WHERE c.oid >= %(first_oid)s AND c.relkind IN ('r', 'm') AND c.relfilenode <> 0 AND c.relfilenode <> c.oid
UNION ALL
SELECT i.indrelid::int8, i.indexrelid::int8, NULL, NULL FROM pg_index i WHERE i.indexrelid::int8 > %(newer_than)s
"""
NEWEST_OID = "SELECT coalesce(max(oid), 0)::int8 FROM pg_class"

StatementKey = tuple[int, datetime, str]


@dataclass
class Span:
    """Seen from `first` to `last`; the samples just before and just after bound the real span."""

    first: datetime
    last: datetime
    before: datetime
    after: datetime | None = None

    def seen(self, at: datetime) -> None:
        self.last = at
        self.after = None  # seen again (a lock re-taken after a savepoint rolled back): still held

    def bounds(self) -> tuple[float, float]:
        """(at least, at most) seconds."""
        lower = (self.last - self.first).total_seconds()
        upper = ((self.after or self.last) - self.before).total_seconds()
        return lower, max(lower, upper)

    def estimate(self) -> tuple[float, float]:
        """(middle of the bounds, half their width)."""
        lower, upper = self.bounds()
        return (lower + upper) / 2, (upper - lower) / 2


@dataclass
class StatementSeen:
    pid: int
    query_start: datetime
    query: str
    first_seen: datetime
    last_seen: datetime
    ended_at: datetime | None = None  # state_change once the session was seen past it

    @property
    def key(self) -> StatementKey:
        return (self.pid, self.query_start, self.query)

    def duration(self) -> tuple[float, bool]:
        """(seconds, exact)."""
        if self.ended_at is not None:
            return (self.ended_at - self.query_start).total_seconds(), True
        return (self.last_seen - self.query_start).total_seconds(), False


@dataclass
class HoldSeen:
    pid: int
    relation: int
    mode: str
    span: Span
    statement: StatementKey  # the statement it is credited to
    taken_by_statement: bool  # false: maybe taken by an earlier statement of the transaction, too short to be seen
    statements: list[StatementKey] = field(default_factory=list)  # every statement seen while it was held
    transaction: datetime | None = None  # its transaction's start (the statement's, outside a transaction block)


@dataclass
class WaitSeen:
    pid: int
    relation: int
    mode: str
    span: Span
    statement: StatementKey
    blocked_by: set[int] = field(default_factory=set)


@dataclass
class Observations:
    statements: list[StatementSeen]
    holds: list[HoldSeen]
    waits: list[WaitSeen]
    samples: int
    gaps: list[float]
    errors: int
    last_error: str | None
    started_at: datetime | None
    storage: dict[int, int] = field(default_factory=dict)  # a committed rewrite's storage OID -> its table's OID


class Watcher:
    """Start it before the command, stop it after: `with Watcher(spec, 0.02, exclude=[pid]) as w: ...; w.result`."""

    def __init__(self, spec: ConnectionSpec, interval: float, exclude: list[int]) -> None:
        self.spec = spec
        self.interval = interval
        self.exclude = list(exclude)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rehearsal-watcher", daemon=True)
        self._statements: dict[StatementKey, StatementSeen] = {}
        self._holds: dict[tuple[int, datetime, int, str], HoldSeen] = {}
        self._waits: dict[tuple[StatementKey, int, str], WaitSeen] = {}
        self._samples = 0
        self._times: list[datetime] = []
        self._errors = 0
        self._last_error: str | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._pids: list[int] = []
        self._storage: dict[int, int] = {}
        self._newer_than = 2**32  # the newest relation's OID when watching began (read at start)
        self._running: set[tuple[Any, ...]] | None = None  # the sessions' statements and locks at the last sample
        self.result: Observations | None = None

    def __enter__(self) -> Watcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _open(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(
            **{**self.spec.connect_kwargs(), "application_name": "dbops rehearsal watcher"},
            autocommit=True,
            # role=none: as the session user, whatever role its logins take by default (a deployed rehearsal's
            # role acts as the tables' owner), so that pg_stat_activity shows the command's sessions' queries
            options="-c statement_timeout=2000 -c lock_timeout=200 -c role=none",
        )
        conn.prepare_threshold = 0  # the sample is planned once
        self._pids.append(conn.info.backend_pid)
        return conn

    @property
    def pids(self) -> list[int]:
        """The backend pids of the watcher's own sessions (one, unless it had to reconnect)."""
        return list(self._pids)

    def start(self) -> None:
        """Connect and take the first sample before returning, so the command's first lock has a sample before it."""
        self._conn = self._open()
        row = self._conn.execute(NEWEST_OID).fetchone()
        self._newer_than = int(row[0]) if row else self._newer_than
        self.sample()
        self._thread.start()

    def stop(self) -> Observations:
        """One last sample (locks released at the command's end are seen gone), then the observations."""
        if self.result is not None:
            return self.result
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.sample()
        if self._conn is not None:
            self._conn.close()
        gaps = [(b - a).total_seconds() for a, b in zip(self._times, self._times[1:], strict=False)]
        self.result = Observations(
            statements=sorted(self._statements.values(), key=lambda s: (s.query_start, s.pid)),
            holds=list(self._holds.values()),
            waits=list(self._waits.values()),
            samples=self._samples,
            gaps=gaps,
            errors=self._errors,
            last_error=self._last_error,
            started_at=self._times[0] if self._times else None,
            storage=dict(self._storage),
        )
        return self.result

    def _run(self) -> None:
        next_at = time.monotonic() + self.interval
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            next_at += self.interval
            if next_at < time.monotonic():  # fell behind (a slow sample): keep the interval from now
                next_at = time.monotonic() + self.interval
            self.sample()

    def sample(self) -> None:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = self._open()
            rows = self._conn.execute(SAMPLE, {"first_oid": FIRST_USER_OID, "exclude": self.exclude}).fetchall()
            # what the sessions run and hold: a change may be a commit (its locks released), which makes a
            # rewrite's storage visible (the transactions of one query string share their start time)
            running = {(r[1], r[5], r[3], r[7], r[8], r[9]) for r in rows}
            if running != self._running:
                self._note_storage()
                self._running = running
        except psycopg.Error as exc:
            self._errors += 1
            self._last_error = describe_error(exc)
            if self._conn is not None and self._conn.broken:
                self._conn = None
            return
        if rows:  # always one row at least: the sample's time, with no session when there is none
            self._record(rows[0][0], rows)

    def _note_storage(self) -> None:
        assert self._conn is not None
        params = {"first_oid": FIRST_USER_OID, "newer_than": self._newer_than}
        for table, *parts in self._conn.execute(STORAGE, params).fetchall():
            for oid in parts:
                if oid:
                    self._storage.setdefault(int(oid), int(table))

    def _record(self, at: datetime, rows: list[tuple[Any, ...]]) -> None:
        before = self._times[-1] if self._times else at
        self._samples += 1
        self._times.append(at)
        held_now: set[tuple[int, datetime, int, str]] = set()
        waiting_now: set[tuple[StatementKey, int, str]] = set()
        for _, pid, state, query_start, state_change, xact_start, query, relation, mode, granted, blockers in rows:
            if pid is None or query_start is None:
                continue  # no session, or one that has run nothing yet
            key: StatementKey = (pid, query_start, query or "")
            stmt = self._statements.get(key)
            if stmt is None:
                stmt = self._statements[key] = StatementSeen(pid, query_start, query or "", at, at)
            stmt.last_seen = at
            if state != "active" and state_change is not None:
                stmt.ended_at = state_change
            if relation is None:
                continue
            if granted:
                hold_key = (pid, xact_start or query_start, relation, mode)
                held_now.add(hold_key)
                hold = self._holds.get(hold_key)
                if hold is None:
                    # the statement was already running at the sample before (which saw no such lock), or it is
                    # its transaction's first: then it took the lock
                    taken = query_start <= before or (xact_start is not None and xact_start >= query_start)
                    hold = self._holds[hold_key] = HoldSeen(
                        pid, relation, mode, Span(at, at, before), key, taken, transaction=hold_key[1]
                    )
                hold.span.seen(at)
                if key not in hold.statements:
                    hold.statements.append(key)
            else:
                wait_key = (key, relation, mode)
                waiting_now.add(wait_key)
                wait = self._waits.get(wait_key)
                if wait is None:
                    wait = self._waits[wait_key] = WaitSeen(pid, relation, mode, Span(at, at, before), key)
                wait.span.seen(at)
                wait.blocked_by.update(blockers or [])
        for hold_key, hold in self._holds.items():
            if hold_key not in held_now and hold.span.after is None and hold.span.last < at:
                hold.span.after = at
        for wait_key, wait in self._waits.items():
            if wait_key not in waiting_now and wait.span.after is None and wait.span.last < at:
                wait.span.after = at
