"""A selective swap into a database the application is writing to (issue #25): pgbench's TPC-B, foreign keys on,
4 clients, runs through the restore of a referenced table (pgbench_branches) and of referencing ones
(pgbench_tellers, pgbench_accounts) with no failed transaction, no lost row and no window over a second without
a commit; a session holding a conflicting lock past the budget gets the restore refused for now, naming it,
with the target untouched and a concurrent writer never stalled longer than one lock_timeout at a time.

The scratch copy is the target as pgbench -i made it (CREATE DATABASE ... TEMPLATE), staged before the run:
the swap puts the initial balances back while TPC-B keeps changing them."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from dbops.errors import PauseTooLong, RestoreBusy
from dbops.postgres.connection import ConnectionSpec, connect
from dbops.restore.models import TablePlan
from dbops.restore.selective_swap.swap import SwapLimits, swap_tables
from local_stack import pgbench
from local_stack.postgres import LocalPostgres

pytestmark = pytest.mark.skipif(pgbench.pgbench_path() is None, reason="pgbench is not installed")

# every foreign key pgbench -I f makes, as (child, its columns, parent, its columns)
PGBENCH_KEYS = [
    ("pgbench_tellers", "bid", "pgbench_branches", "bid"),
    ("pgbench_accounts", "bid", "pgbench_branches", "bid"),
    ("pgbench_history", "bid", "pgbench_branches", "bid"),
    ("pgbench_history", "tid", "pgbench_tellers", "tid"),
    ("pgbench_history", "aid", "pgbench_accounts", "aid"),
]
ROWS = {"pgbench_branches": 1, "pgbench_tellers": 10, "pgbench_accounts": 100_000}


@pytest.fixture
def live(pg: LocalPostgres) -> Iterator[tuple[ConnectionSpec, ConnectionSpec]]:
    """(target, scratch): pgbench's tables at scale 1 in the target, and a copy of them as the restore's scratch."""
    admin = ConnectionSpec.from_url(pg.url())
    name = f"live_{uuid.uuid4().hex[:8]}"
    with connect(admin) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    target = admin.for_database(name)
    pgbench.initialize(target, scale=1)
    with connect(admin) as conn:
        conn.execute(f"CREATE DATABASE {name}_scratch TEMPLATE {name}")
    yield target, admin.for_database(f"{name}_scratch")
    with connect(admin) as conn:
        for db in (name, f"{name}_scratch"):
            conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def _one(spec: ConnectionSpec, query: str | sql.Composable) -> Any:
    with connect(spec) as conn:
        row = conn.execute(query).fetchone()
        assert row is not None
        return row[0]


def _orphans(spec: ConnectionSpec) -> dict[str, int]:
    found = {}
    for child, column, parent, key in PGBENCH_KEYS:
        query = sql.SQL(
            "SELECT count(*) FROM {child} c WHERE c.{column} IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE p.{key} = c.{column})"
        ).format(
            child=sql.Identifier(child),
            column=sql.Identifier(column),
            parent=sql.Identifier(parent),
            key=sql.Identifier(key),
        )
        found[f"{child}.{column}"] = _one(spec, query)
    return found


@pytest.mark.parametrize("table", ["pgbench_branches", "pgbench_tellers", "pgbench_accounts"])
def test_restore_under_tpcb_fails_no_transaction_loses_no_row_and_pauses_under_a_second(
    live: tuple[ConnectionSpec, ConnectionSpec], table: str
) -> None:
    target, scratch = live
    run = pgbench.TpcB(target, seconds=8)  # outlasts the swap (2-3.5 s for accounts on a busy host)
    try:
        time.sleep(2)  # the application running, the tables changed since the "backup"
        started = time.time()
        result = swap_tables(scratch, target, [TablePlan(schema_name="public", name=table, rows=ROWS[table])])
        finished = time.time()
        outcome = run.result()
    finally:
        run.stop()

    assert outcome.failed == 0, outcome.output
    assert outcome.processed > 100
    # pgbench_history holds one row per committed transaction (pgbench -i emptied it): none lost, none extra
    assert _one(target, "SELECT count(*) FROM pgbench_history") == outcome.processed
    assert _orphans(target) == dict.fromkeys(_orphans(target), 0)
    assert result.rows == {f"public.{table}": ROWS[table]}
    assert finished - started < 6 and outcome.commits[0] < started < finished < outcome.commits[-1]
    gap = outcome.longest_gap_s()
    assert gap < 1.0, f"longest window without a commit {gap:.3f}s (swap pause {result.pause_s:.3f}s)"
    assert 0 < result.pause_s < 1.0 and result.lock_attempts >= 1
    assert result.changed_rows > 0  # TPC-B changed the balances the swap put back


def test_a_session_holding_a_lock_past_the_budget_gets_the_restore_refused_for_now_and_named(
    live: tuple[ConnectionSpec, ConnectionSpec],
) -> None:
    target, scratch = live
    with connect(target) as conn:
        conn.execute("UPDATE pgbench_branches SET bbalance = 7")
    kwargs = target.connect_kwargs() | {"application_name": "nightly-report"}
    with psycopg.connect(**kwargs) as blocker:
        # ROW EXCLUSIVE on pgbench_tellers, which references the restored table: the swap needs SHARE there
        blocker.execute("UPDATE pgbench_tellers SET tbalance = tbalance WHERE tid = 1")
        blocker_pid = blocker.info.backend_pid
        latencies: list[float] = []
        stop = threading.Event()

        def writer() -> None:  # the application's inserts: each checks its foreign keys into the restored table
            with psycopg.connect(**target.connect_kwargs(), autocommit=True) as app:
                while not stop.is_set():
                    began = time.monotonic()
                    app.execute("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (2, 1, 1, 0, now())")
                    latencies.append(time.monotonic() - began)
                    time.sleep(0.005)

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            time.sleep(0.2)
            began = time.monotonic()
            with pytest.raises(RestoreBusy) as refused:
                swap_tables(
                    scratch,
                    target,
                    [TablePlan(schema_name="public", name="pgbench_branches", rows=1)],
                    SwapLimits(lock_timeout_s=0.2, lock_wait_budget_s=2.0),
                )
            took = time.monotonic() - began
        finally:
            stop.set()
            thread.join()
        blocker.rollback()

    message = str(refused.value)
    assert f"pid {blocker_pid}" in message and "'nightly-report'" in message, message
    assert "RowExclusiveLock on pgbench_tellers" in message and "nothing changed" in message
    assert "UPDATE" not in message  # what the session runs is never shown
    assert took < 2.5
    assert _one(target, "SELECT sum(bbalance) FROM pgbench_branches") == 7  # untouched
    assert len(latencies) > 50
    # a writer waits on the swap for one attempt's lock_timeout at most (plus this shared machine's scheduling)
    assert max(latencies) < 0.2 + 0.1, sorted(latencies)[-5:]


def test_a_swap_that_would_pause_longer_than_max_pause_is_refused_before_any_lock(
    live: tuple[ConnectionSpec, ConnectionSpec],
) -> None:
    target, scratch = live
    with connect(target) as conn:
        conn.execute("UPDATE pgbench_accounts SET abalance = 1 WHERE aid <= 50000")
    with pytest.raises(PauseTooLong, match=r"would change 50000 rows .* restore\.max_pause 1ms"):
        swap_tables(
            scratch,
            target,
            [TablePlan(schema_name="public", name="pgbench_accounts", rows=100_000)],
            SwapLimits(max_pause_s=0.001),
        )
    assert _one(target, "SELECT count(*) FROM pgbench_accounts WHERE abalance = 1") == 50000
