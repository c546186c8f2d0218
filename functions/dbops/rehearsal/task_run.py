"""How a rehearsal's run on ECS ended, from what Step Functions hands on: RunTask's output (the stopped task), or the
Catch's error (States.Timeout at max_duration; a task that failed, its description as the cause; on the local
stand-in, the essential container's exit code in the message)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from dbops.contract import MIGRATION_CONTAINER
from dbops.rehearsal.deployed_state import RehearsalState
from dbops.rehearsal.models import CommandRun


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, UTC)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


_EXIT = re.compile(r"exit(?:ed with)? code (-?\d+)")


def run_of(state: RehearsalState) -> CommandRun:
    """How the last run ended, from RunTask's output (or the Catch's error): the migration container's exit code,
    a time limit reached (States.Timeout), or why the task could not run."""
    argv = state.run_command or []
    limit = state.run_timeout_s
    if state.task_error is not None:
        error = state.task_error
        if error.error == "States.Timeout":
            return CommandRun(argv=argv, exit_code=None, seconds=float(limit), timed_out=True)
        try:
            task = json.loads(error.cause)
        except ValueError:
            task = None
        if isinstance(task, dict) and task.get("Containers"):
            return _from_task(argv, task)
        code = _EXIT.search(error.cause)
        if code:
            return CommandRun(argv=argv, exit_code=int(code.group(1)), seconds=0.0, output_tail=error.cause[-2000:])
        return CommandRun(argv=argv, exit_code=None, seconds=0.0, error=error.message()[:2000])
    return _from_task(argv, state.task or {})


def _from_task(argv: list[str], task: dict[str, Any]) -> CommandRun:
    containers = {c.get("Name"): c for c in task.get("Containers", [])}
    container = containers.get(MIGRATION_CONTAINER, {})
    code = container.get("ExitCode")
    started, stopped = _timestamp(task.get("StartedAt")), _timestamp(task.get("StoppedAt"))
    seconds = (stopped - started).total_seconds() if started and stopped else 0.0
    reason = container.get("Reason") or task.get("StoppedReason") or ""
    if code is None:
        return CommandRun(argv=argv, exit_code=None, seconds=seconds, error=f"the migration did not run: {reason}")
    return CommandRun(argv=argv, exit_code=int(code), seconds=round(seconds, 3), output_tail=reason)
