"""Restore work as an ECS Fargate task, beyond Lambda's 15 minutes and /tmp: the stage step (archives too large
for Lambda), or the dump of a point-in-time copy (databases whose dump does not fit in Lambda).

The state machine passes the execution state in DBOPS_RESTORE_STATE and the work in DBOPS_RESTORE_STEP (`stage`,
the default, or `dump_point_in_time`); the same dbops code runs. The state it passes on is unchanged: the dump is
found in the bucket by the DumpPointInTime function that follows. A state that is missing or invalid, an unknown
step, or work that fails, ends the task with one line on stderr and exit code 1 (the state machine's Catch takes
it to Rollback).
"""

from __future__ import annotations

import os
import sys

from pydantic import ValidationError

from dbops import contract
from dbops.errors import DbopsError, validation_problems
from dbops.restore import point_in_time_steps, steps
from dbops.restore.models import RestoreState
from dbops.settings import FunctionSettings

STATE_VARIABLE = contract.ENV_RESTORE_STATE
STEP_VARIABLE = contract.ENV_RESTORE_STEP
STEPS = ("stage", "dump_point_in_time")


def parse_task_state(text: str | None) -> RestoreState:
    """The execution state as the state machine wrote it (JSON); a ValueError names every wrong field."""
    if not text or not text.strip():
        raise ValueError(f"{STATE_VARIABLE} is not set: the restore state machine passes the execution state in it")
    try:
        return RestoreState.model_validate_json(text)
    except ValidationError as exc:
        raise ValueError(f"invalid restore state in {STATE_VARIABLE}: {validation_problems(exc)}") from None


def _fail(exc: Exception) -> int:
    print(f"dbops restore task: error: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)
    return 1


def main() -> int:
    step = os.environ.get(STEP_VARIABLE) or "stage"
    try:
        state = parse_task_state(os.environ.get(STATE_VARIABLE))
        if step not in STEPS:
            raise ValueError(f"{STEP_VARIABLE} is {step[:40]!r}: give one of {', '.join(STEPS)}")
    except ValueError as exc:
        return _fail(exc)
    try:
        if step == "stage":
            steps.stage(state, FunctionSettings())
            print(f"staged {state.work_db} from backup {state.backup_id}", flush=True)
        else:
            backup_id = point_in_time_steps.write_dump(state, FunctionSettings())
            print(f"dumped {state.temporary_instance} as of {state.request.as_of}: backup {backup_id}", flush=True)
    except DbopsError as exc:
        return _fail(exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
