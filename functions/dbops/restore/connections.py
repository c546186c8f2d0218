"""The connection specs of a restore's databases, from its state: the configured server, the target, the work copy."""

from __future__ import annotations

from dbops.postgres.connection import ConnectionSpec, database_spec
from dbops.restore.models import RestoreState
from dbops.settings import FunctionSettings


def server_spec(state: RestoreState, settings: FunctionSettings) -> ConnectionSpec:
    return database_spec(settings.database(state.database))


def target_spec(state: RestoreState, settings: FunctionSettings) -> ConnectionSpec:
    assert state.target_db is not None
    return server_spec(state, settings).for_database(state.target_db)


def work_spec(state: RestoreState, settings: FunctionSettings) -> ConnectionSpec:
    assert state.work_db is not None
    return server_spec(state, settings).for_database(state.work_db)
