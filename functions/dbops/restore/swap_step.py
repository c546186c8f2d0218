"""The Swap step: the checked copy put in place, by two renames (whole database) or the table swap (selective)."""

from __future__ import annotations

from dbops.errors import DbopsError
from dbops.restore import databases
from dbops.restore.connections import server_spec
from dbops.restore.models import RestoreState
from dbops.restore.selective_swap.swap import SwapLimits, swap_tables
from dbops.settings import FunctionSettings


def swap(state: RestoreState, settings: FunctionSettings) -> RestoreState:
    """Put the checked copy in place. Full: two renames; selective: one transaction on the target."""
    spec = server_spec(state, settings)  # its secret read once: the work and target specs are derived from it
    assert state.target_db is not None and state.work_db is not None
    if state.selective:
        if state.swapped:
            return state
        limits = SwapLimits(
            settings.restore_lock_timeout_s, settings.restore_lock_wait_budget_s, settings.restore_max_pause_s
        )
        result = swap_tables(spec.for_database(state.work_db), spec.for_database(state.target_db), state.tables, limits)
        return state.model_copy(
            update={
                "swapped": True,
                "refreshed_views": result.refreshed_views,
                "swap_pause_s": result.pause_s,
                "swap_lock_attempts": result.lock_attempts,
            }
        )
    target, work, pre = state.target_db, state.work_db, state.pre_restore_db
    if pre is None:  # a new target: nothing to keep aside
        if databases.exists(spec, work):
            databases.rename(spec, work, target)
        return state.model_copy(update={"swapped": True})
    present = databases.existing(spec, target, work, pre)
    if {pre, target} <= present and work not in present:
        return state.model_copy(update={"swapped": True})  # done by an earlier attempt
    if target in present:
        databases.allow_connections(spec, target, False)
        databases.end_connections(spec, target)
        databases.rename(spec, target, pre)
    try:
        databases.rename(spec, work, target)
    except DbopsError:
        databases.rename(spec, pre, target)
        databases.allow_connections(spec, target, True)
        raise
    databases.allow_connections(spec, pre, True)  # the kept copy is open for inspection, under its own name
    return state.model_copy(update={"swapped": True})
