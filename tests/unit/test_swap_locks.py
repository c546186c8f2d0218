"""The selective swap's lock order and backoff (dbops.restore.selective_swap.locks); the locks themselves are exercised
against real servers in tests/integration/test_swap_live.py."""

from __future__ import annotations

from dbops.restore.selective_swap.locks import BACKOFF_CAP_S, LockRequest, backoff_s, starting_at

PLAN = (
    LockRequest(16390, "pgbench_history", "SHARE", False),
    LockRequest(16393, "pgbench_tellers", "SHARE", False),
    LockRequest(16396, "pgbench_accounts", "SHARE", False),
    LockRequest(16399, "pgbench_branches", "EXCLUSIVE", True),
)


def test_an_attempt_goes_round_the_oid_order_from_the_table_the_last_one_could_not_lock() -> None:
    assert starting_at(PLAN, None) == PLAN
    assert [r.name for r in starting_at(PLAN, 16396)] == [
        "pgbench_accounts",
        "pgbench_branches",
        "pgbench_history",
        "pgbench_tellers",
    ]
    assert starting_at(PLAN, 99) == PLAN  # a table no longer in the plan: from the start
    assert starting_at((), 16396) == ()


def test_lock_statements_name_the_mode_and_only_restored_tables_alone() -> None:
    assert PLAN[3].describe() == "EXCLUSIVE on pgbench_branches"
    assert "ONLY" not in repr(PLAN[0].statement()) and "ONLY" in repr(PLAN[3].statement())


def test_backoff_grows_from_one_lock_timeout_with_jitter_and_a_cap() -> None:
    for attempt in range(1, 12):
        delays = [backoff_s(attempt, 0.2) for _ in range(200)]
        ceiling = min(BACKOFF_CAP_S, 0.2 * 2**attempt)
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 100  # jittered
