"""The StopApplication and StartApplication steps: the database's application hook signalled around the swap."""

from __future__ import annotations

from dbops.aws import app_hooks
from dbops.restore.models import RestoreState
from dbops.settings import FunctionSettings


def stop_application(state: RestoreState, settings: FunctionSettings) -> RestoreState:
    hook = settings.database(state.database).app_hook
    if hook is None or state.drill:
        return state
    app_hooks.signal_application(hook, "stop", str(state.database), state.restore_id)
    return state.model_copy(update={"app_stopped": True})


def start_application(state: RestoreState, settings: FunctionSettings) -> RestoreState:
    hook = settings.database(state.database).app_hook
    if hook is not None and state.app_stopped:
        app_hooks.signal_application(hook, "start", str(state.database), state.restore_id)
    return state.model_copy(update={"app_stopped": False})
