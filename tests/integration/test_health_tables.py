"""Tables, indexes and sequences in trouble, made so for real (both server versions)."""

from __future__ import annotations

import time

import psycopg
import pytest
from psycopg import sql

from dbops.health import Status
from dbops.postgres.connection import ConnectionSpec, connect
from tests.integration.health_helpers import check, flush_stats, open_transaction


def test_dead_tuples_after_a_mass_update_are_reported_with_a_bloat_estimate(sample_db: ConnectionSpec) -> None:
    with connect(sample_db) as conn:
        conn.execute("CREATE TABLE churn (id int PRIMARY KEY, n int) WITH (autovacuum_enabled = off)")
        conn.execute("INSERT INTO churn SELECT g, 0 FROM generate_series(1, 30000) g")
        conn.execute("UPDATE churn SET n = n + 1")  # every row now has a dead version
        flush_stats(conn)

    probe = check(sample_db).probe("dead_tuples")

    assert probe.status is Status.CRITICAL  # 50 % dead: the default critical share
    assert probe.values["bloated_tables"] == 1
    assert probe.values["max_dead_tuples_percent"] == 50.0
    assert probe.values["dead_tuples"] == 30000
    assert probe.values["bloat_estimate_bytes"] > 0  # type: ignore[operator]
    [detail] = probe.details
    assert detail.startswith("public.churn: 50 % dead (30000 dead, 30000 live)")
    assert "never vacuumed" in detail and "autovacuum disabled on this table" in detail


def test_vacuum_overdue_only_for_tables_autovacuum_should_have_visited(sample_db: ConnectionSpec) -> None:
    with connect(sample_db) as conn:
        conn.execute("CREATE TABLE overdue (id int PRIMARY KEY, n int) WITH (autovacuum_enabled = off)")
        conn.execute("CREATE TABLE settled (id int PRIMARY KEY, n int) WITH (autovacuum_enabled = off)")
        for table in ("overdue", "settled"):
            name = sql.Identifier(table)
            conn.execute(sql.SQL("INSERT INTO {} SELECT g, 0 FROM generate_series(1, 1000) g").format(name))
            flush_stats(conn)  # the inserts are counted before ANALYZE resets the count
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(name))
        conn.execute("UPDATE overdue SET n = 1 WHERE id <= 500")  # over 50 + 20 % of 1000: vacuum is due
        conn.execute("UPDATE settled SET n = 1 WHERE id <= 10")  # under the trigger: nothing is due
        flush_stats(conn)
    time.sleep(0.6)

    probe = check(
        sample_db,
        vacuum_age_warn_seconds=0.5,
        vacuum_age_critical_seconds=600,
        analyze_age_warn_seconds=0.5,
        analyze_age_critical_seconds=600,
    ).probe("vacuum_age")

    assert probe.status is Status.WARN
    assert probe.values["vacuum_overdue_tables"] == 1
    assert probe.values["analyze_overdue_tables"] == 1, probe.details
    [detail] = probe.details
    assert detail.startswith("public.overdue: vacuum due (500 dead rows)")


def test_invalid_index_left_by_a_failed_concurrent_build_is_reported(sample_db: ConnectionSpec) -> None:
    with connect(sample_db) as conn:
        conn.execute("CREATE TABLE dupes (v int)")
        conn.execute("INSERT INTO dupes VALUES (1), (1)")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("CREATE UNIQUE INDEX CONCURRENTLY dupes_v_key ON dupes (v)")

    probe = check(sample_db).probe("invalid_indexes")

    assert probe.status is Status.WARN
    assert probe.values["invalid_indexes"] == 1
    assert probe.details == [
        "public.dupes_v_key on dupes is invalid: DROP INDEX CONCURRENTLY public.dupes_v_key, then build it again"
    ]


def test_duplicate_and_unused_indexes_are_reported(sample_db: ConnectionSpec) -> None:
    with connect(sample_db) as conn:
        conn.execute("CREATE INDEX issues_sprint_again ON issues (sprint_id)")  # repeats issues_sprint_id_idx
        conn.execute("CREATE INDEX issues_sprint_status ON issues (sprint_id, status)")  # covers both
        conn.execute("CREATE INDEX issues_status_where ON issues (status) WHERE resolved_at IS NULL")
        conn.execute("CREATE INDEX issues_status ON issues (status)")  # different predicate: not a duplicate

    report = check(sample_db, unused_index_min_bytes=8192)

    duplicates = report.probe("duplicate_indexes")
    assert duplicates.status is Status.WARN
    assert duplicates.values["duplicate_indexes"] == 2
    assert sorted(d.split(" (")[0] for d in duplicates.details) == [
        "public.issues_sprint_again on issues",
        "public.issues_sprint_id_idx on issues",
    ]
    assert any("issues_sprint_again" in d and "repeats issues_sprint_id_idx" in d for d in duplicates.details)
    unused = report.probe("unused_indexes")
    assert unused.status is Status.WARN
    names = {d.split(" ")[0] for d in unused.details}
    assert "public.issues_sprint_again" in names
    assert not any(n.endswith("_pkey") or n.endswith("_key") for n in names)  # constraint indexes are exempt


def test_unused_indexes_below_the_size_floor_are_quiet(sample_db: ConnectionSpec) -> None:
    probe = check(sample_db).probe("unused_indexes")  # the sample's indexes are small and never scanned yet
    assert probe.status is Status.OK
    assert probe.values["unused_indexes"] == 0


def test_sequence_close_to_its_maximum_is_reported(sample_db: ConnectionSpec) -> None:
    with connect(sample_db) as conn:
        conn.execute("CREATE TABLE tickets (id serial PRIMARY KEY)")
        conn.execute("SELECT setval('tickets_id_seq', 2040109465)")  # 95 % of 2^31 - 1
        # a bigint sequence feeding an integer column: the column's type is the real limit
        conn.execute("CREATE SEQUENCE legacy_seq AS bigint")
        conn.execute("CREATE TABLE legacy (id integer DEFAULT nextval('legacy_seq'))")
        conn.execute("ALTER SEQUENCE legacy_seq OWNED BY legacy.id")
        conn.execute("SELECT setval('legacy_seq', 1932735283)")  # 90 % of 2^31 - 1

    probe = check(sample_db).probe("sequences")

    assert probe.status is Status.CRITICAL
    assert probe.values["sequences_near_max"] == 2
    assert probe.values["max_sequence_used_percent"] == pytest.approx(95.0, abs=0.01)
    assert probe.details == [
        "public.tickets_id_seq: 2,040,109,465 of 2,147,483,647 (95.0 %), feeds tickets.id (integer)",
        "public.legacy_seq: 1,932,735,283 of 2,147,483,647 (90.0 %), feeds legacy.id (integer)",
    ]


def test_sizes_list_the_largest_tables_and_skip_a_locked_one_instead_of_waiting(sample_db: ConnectionSpec) -> None:
    healthy = check(sample_db).probe("sizes")
    with open_transaction(sample_db, "LOCK TABLE report_snapshots IN ACCESS EXCLUSIVE MODE"):
        report = check(sample_db, lock_timeout_ms=0, statement_timeout_ms=3000)  # would wait out 3 s if it queued

    assert healthy.status is Status.OK
    assert healthy.details[0].startswith("public.report_snapshots: ")  # the sample's largest table
    assert healthy.values["database_size_bytes"] > healthy.values["tables_size_bytes"] > 0  # type: ignore[operator]
    locked = report.probe("sizes")
    assert locked.status is Status.OK
    assert "1 locked by another session, not measured" in locked.message
    assert locked.details[0] == (
        "public.report_snapshots: locked (AccessExclusiveLock held or queued), size not measured"
    )
    for name in ("dead_tuples", "unused_indexes", "duplicate_indexes"):
        assert report.probe(name).status is Status.OK, report.probe(name).message


def test_wraparound_age_is_measured_and_graded(sample_db: ConnectionSpec) -> None:
    healthy = check(sample_db).probe("wraparound")
    alarmed = check(sample_db, xid_age_warn=1, xid_age_critical=2_000_000_000).probe("wraparound")

    assert healthy.status is Status.OK
    age = healthy.values["xid_wraparound_age"]
    assert isinstance(age, int) and age > 0
    assert alarmed.status is Status.WARN


def test_past_the_exact_limit_sizes_are_estimated_and_the_largest_measured(sample_db: ConnectionSpec) -> None:
    exact = check(sample_db).probe("sizes")
    estimated = check(sample_db, exact_sizes_max_tables=2, top=2).probe("sizes")

    assert estimated.status is Status.OK
    assert "(estimated from planner statistics: more than 2 tables; the largest measured)" in estimated.message
    assert estimated.details == exact.details[:2]  # ranked by estimate, shown with measured sizes
    assert 0 < estimated.values["tables_size_bytes"] <= exact.values["tables_size_bytes"]  # type: ignore[operator]
