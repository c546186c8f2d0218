"""The restore's stage step as an ECS Fargate task, for archives too large for Lambda's 15 minutes and /tmp.

The state machine passes the execution state in DBOPS_RESTORE_STATE; the same dbops code runs. A state that is
missing or invalid, or a stage that fails, ends the task with one line on stderr and exit code 1 (the state
machine's Catch takes it to Rollback).
"""

from __future__ import annotations

import os
import sys

from pydantic import ValidationError

from dbops.errors import DbopsError, validation_problems
from dbops.restore import steps
from dbops.restore.models import RestoreState
from dbops.settings import FunctionSettings

STATE_VARIABLE = "DBOPS_RESTORE_STATE"


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
    try:
        state = parse_task_state(os.environ.get(STATE_VARIABLE))
    except ValueError as exc:
        return _fail(exc)
    try:
        steps.stage(state, FunctionSettings())
    except DbopsError as exc:
        return _fail(exc)
    print(f"staged {state.work_db} from backup {state.backup_id}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
