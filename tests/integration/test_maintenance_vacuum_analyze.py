"""vacuum acts exactly on the tables past its thresholds; a table another session holds locked is retried within
lock_timeout, then skipped, and the run goes on (both server versions)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from psycopg import sql

from dbops.maintenance import MaintenanceConfig, execute_plan, plan_task, run_task
from dbops.postgres.connection import ConnectionSpec
from tests.integration.maintenance_helpers import (
    LockHolder,
    Timeline,
    dead_tuples,
    execute,
    stat_counts,
    wait_until,
)

# (rows, rows deleted): with the thresholds below only ratio_t (40 %) and count_t (2500 dead) qualify
TABLES = {
    "ratio_t": (1000, 400),
    "count_t": (20000, 2500),
    "below_min_t": (200, 99),  # 49 % dead but fewer than 100 dead tuples
    "low_ratio_t": (20000, 1000),  # 5 % and 1000 < 2000
    "clean_t": (1000, 0),
}
THRESHOLDS = {"vacuum_min_dead_tuples": 100, "vacuum_dead_ratio": 0.2, "vacuum_dead_tuples": 2000}


def _tables_with_dead_tuples(spec: ConnectionSpec, tables: dict[str, tuple[int, int]]) -> None:
    """Real dead tuples (DELETE) in tables autovacuum leaves alone, then wait for the statistics to show them."""
    for name, (rows, deleted) in tables.items():
        table = sql.Identifier(name)
        execute(
            spec,
            sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, v text) WITH (autovacuum_enabled = false)").format(table),
            sql.SQL("INSERT INTO {} SELECT g, md5(g::text) FROM generate_series(1, {}) g").format(
                table, sql.Literal(rows)
            ),
            sql.SQL("DELETE FROM {} WHERE id <= {}").format(table, sql.Literal(deleted)),
        )
    expected = {name: (rows - deleted, deleted) for name, (rows, deleted) in tables.items()}
    wait_until(
        lambda: {k: v for k, v in dead_tuples(spec).items() if k in expected} == expected,
        "the statistics to count the dead tuples",
    )


def test_vacuum_picks_exactly_the_tables_past_the_thresholds(make_database: Callable[..., ConnectionSpec]) -> None:
    spec = make_database(empty=True)
    _tables_with_dead_tuples(spec, TABLES)
    config = MaintenanceConfig(**THRESHOLDS)

    plan = plan_task(spec, "vacuum", config)

    assert sorted(o.name for o in plan.objects) == ["count_t", "ratio_t"]
    assert all(o.action == "VACUUM (ANALYZE, SKIP_LOCKED)" for o in plan.objects)
    summary = execute_plan(spec, plan, config)
    assert (summary.done, summary.skipped, summary.failed) == (2, 0, 0)
    vacuumed = stat_counts(spec, "vacuum_count")
    assert {name for name in TABLES if vacuumed[name] > 0} == {"count_t", "ratio_t"}
    after = dead_tuples(spec)
    assert after["ratio_t"][1] == 0 and after["count_t"][1] == 0
    assert after["low_ratio_t"][1] == 1000  # not touched


@pytest.mark.parametrize("task", ["analyze", "vacuum"])
def test_a_table_locked_by_another_session_is_retried_then_skipped_and_the_run_goes_on(
    make_database: Callable[..., ConnectionSpec], task: str
) -> None:
    spec = make_database(empty=True)
    _tables_with_dead_tuples(spec, {"a_t": (1000, 500), "b_t": (1000, 500), "c_t": (1000, 500)})
    config = MaintenanceConfig(lock_timeout_s=0.2, lock_retries=2, retry_delay_s=0.05, **THRESHOLDS)
    timeline = Timeline()

    with LockHolder(spec, "LOCK TABLE b_t IN ACCESS EXCLUSIVE MODE"):
        summary = run_task(spec, task, config, progress=timeline)  # type: ignore[arg-type]

    by_name = {o.name: o for o in summary.objects}
    assert [o.name for o in summary.objects] == ["public.a_t", "public.b_t", "public.c_t"]
    assert by_name["public.b_t"].status == "skipped"
    assert by_name["public.b_t"].attempts == 3  # the first try and two retries
    assert "lock" in (by_name["public.b_t"].detail or "")
    assert [e.object for _, e in timeline.events if e.event == "retry"] == ["public.b_t", "public.b_t"]
    assert by_name["public.a_t"].status == by_name["public.c_t"].status == "done"
    assert summary.failed == 0
    counts = stat_counts(spec, "vacuum_count" if task == "vacuum" else "analyze_count")
    assert (counts["a_t"] > 0, counts["b_t"] > 0, counts["c_t"] > 0) == (True, False, True)


def test_a_lock_released_between_retries_lets_the_table_be_done(make_database: Callable[..., ConnectionSpec]) -> None:
    spec = make_database(empty=True)
    execute(spec, "CREATE TABLE busy_t (id int PRIMARY KEY)", "INSERT INTO busy_t SELECT generate_series(1, 100)")
    config = MaintenanceConfig(lock_timeout_s=0.2, lock_retries=2, retry_delay_s=0.05)
    holder = LockHolder(spec, "LOCK TABLE busy_t IN ACCESS EXCLUSIVE MODE")
    # the other session commits right after our first lock timeout
    timeline = Timeline(on_event=lambda e: holder.release() if e.event == "retry" else None)

    summary = run_task(spec, "analyze", config, progress=timeline)

    holder.release()
    (result,) = summary.objects
    assert (result.status, result.attempts) == ("done", 2)
    assert stat_counts(spec, "analyze_count")["busy_t"] == 1
