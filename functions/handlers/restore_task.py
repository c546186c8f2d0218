"""Restore work as an ECS Fargate task, beyond Lambda's 15 minutes and /tmp: the stage step (archives too large
for Lambda), or the dump of a point-in-time copy (databases whose dump does not fit in Lambda).

The state machine passes the execution state in DBOPS_RESTORE_STATE and the work in DBOPS_RESTORE_STEP (`stage`,
the default, `dump_point_in_time`, or `fill_rehearsal`: a large backup restored into a rehearsal's scratch
database); the same dbops code runs. The state it passes on is unchanged: the dump is
found in the bucket by the DumpPointInTime function that follows. A state that is missing or invalid, an unknown
step, or work that fails, ends the task with one line on stderr and exit code 1 (the state machine's Catch takes
it to Rollback).
"""

from __future__ import annotations

import sys
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from dbops import contract
from dbops.errors import DbopsError, validation_problems
from dbops.rehearsal import deployed
from dbops.rehearsal.deployed_state import RehearsalState
from dbops.restore import point_in_time_steps, steps
from dbops.restore.models import RestoreState
from dbops.settings import FunctionSettings, RestoreTaskEnvironment
from handlers.observability import logged_progress, logged_warning

STATE_VARIABLE = contract.ENV_RESTORE_STATE
STEP_VARIABLE = contract.ENV_RESTORE_STEP
S = TypeVar("S", bound=BaseModel)
STEPS = ("stage", "dump_point_in_time", "fill_rehearsal")


def parse_task_state(text: str | None) -> RestoreState:
    """The restore's execution state as the state machine wrote it (JSON); a ValueError names every wrong field."""
    return _parse(text, RestoreState)


def parse_rehearsal_state(text: str | None) -> RehearsalState:
    """A rehearsal's execution state (fill_rehearsal), likewise."""
    return _parse(text, RehearsalState)


def _parse(text: str | None, model: type[S]) -> S:
    if not text or not text.strip():
        raise ValueError(f"{STATE_VARIABLE} is not set: the restore state machine passes the execution state in it")
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        raise ValueError(f"invalid restore state in {STATE_VARIABLE}: {validation_problems(exc)}") from None


def _fail(exc: Exception) -> int:
    print(f"dbops restore task: error: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)
    return 1


def _run(step: str, text: str | None) -> str:
    """Do the step; returns the line to print."""
    if step == "fill_rehearsal":
        rehearsal = parse_rehearsal_state(text)
        deployed.fill(rehearsal, FunctionSettings())
        return f"filled {rehearsal.scratch_database} from backup {rehearsal.backup_id}"
    state = parse_task_state(text)
    settings = FunctionSettings()
    if step == "stage":
        steps.stage(state, settings, progress=logged_progress("restore progress"), warn=logged_warning)
        return f"staged {state.work_db} from backup {state.backup_id}"
    backup_id = point_in_time_steps.write_dump(state, settings)
    return f"dumped {state.temporary_instance} as of {state.request.as_of}: backup {backup_id}"


def main() -> int:
    env = RestoreTaskEnvironment()
    step = env.step or "stage"
    try:
        if step not in STEPS:
            raise ValueError(f"{STEP_VARIABLE} is {step[:40]!r}: give one of {', '.join(STEPS)}")
        print(_run(step, env.state), flush=True)
    except (ValueError, DbopsError) as exc:
        return _fail(exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
