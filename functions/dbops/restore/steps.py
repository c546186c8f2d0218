"""The restore steps from a backup, each from its own module, under the names the handlers and the state machine use.

They run validate → safety_backup beside stage → check → stop_application → swap → start_application → finish,
and on any failure rollback → notify_failure. Each takes the execution state and returns it updated, and each is
idempotent, so a retried step does no harm. Nothing touches the target before `swap`, and `rollback` puts it back
as it was. A restore as of a moment runs its own steps around these (dbops.restore.point_in_time_steps).
"""

from __future__ import annotations

from dbops.restore.application import start_application, stop_application
from dbops.restore.check import check
from dbops.restore.outcome import finish, notify_failure
from dbops.restore.rollback import rollback
from dbops.restore.safety_backup import safety_backup
from dbops.restore.stage import stage
from dbops.restore.swap_step import swap
from dbops.restore.validate import validate

__all__ = [
    "check",
    "finish",
    "notify_failure",
    "rollback",
    "safety_backup",
    "stage",
    "start_application",
    "stop_application",
    "swap",
    "validate",
]
