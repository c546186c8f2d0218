"""The Rollback step: after any failure, the target exactly as it was, the work copy gone, the application started."""

from __future__ import annotations

from dbops.restore import databases
from dbops.restore.application import start_application
from dbops.restore.connections import server_spec
from dbops.restore.models import RestoreState
from dbops.settings import FunctionSettings


def rollback(state: RestoreState, settings: FunctionSettings) -> RestoreState:
    """Any failure: the target exactly as it was, the scratch copy gone, the application started again."""
    if state.database is None or state.work_db is None:  # failed in validate: nothing was touched
        return state
    spec = server_spec(state, settings)
    target, work, pre = state.target_db, state.work_db, state.pre_restore_db
    if target and pre:
        present = databases.existing(spec, target, work, pre)
        if pre in present:
            if target in present and work not in present:
                databases.rename(spec, target, work)  # the swap went through before the failure was seen
                present = (present - {target}) | {work}
            if target not in present:
                databases.rename(spec, pre, target)
    if target and state.target_existed and databases.exists(spec, target):
        databases.allow_connections(spec, target, True)
    databases.drop(spec, work)
    return start_application(state, settings)
