"""How a rehearsal's ECS run ended, read from what Step Functions hands the AfterRun step on AWS: RunTask.sync's
output (the stopped task, as DescribeTasks describes it, timestamps in epoch milliseconds) or the Catch's error
(States.TaskFailed carries the task as JSON in its cause; States.Timeout carries nothing of it). The local stand-in's
shapes are covered end to end in tests/workflow/test_rehearsal_workflow.py."""

from __future__ import annotations

import json
from typing import Any

from dbops.rehearsal.deployed_state import RehearsalCall, RehearsalState
from dbops.rehearsal.task_run import run_of
from dbops.restore.models import StepError

COMMAND = ["alembic", "upgrade", "head"]


def _task(migration: dict[str, Any], **task: Any) -> dict[str, Any]:
    return {
        "Containers": [{"Name": "watcher", "ExitCode": 0}, {"Name": "migration", **migration}],
        "StartedAt": 1796017110471,
        "StoppedAt": 1796017114971,
        "StopCode": "EssentialContainerExited",
        **task,
    }


def _state(**update: Any) -> RehearsalState:
    return RehearsalState(request=RehearsalCall(mode="rehearse"), run_command=COMMAND, run_timeout_s=600, **update)


def test_a_task_that_ran_gives_its_migrations_exit_code_and_time() -> None:
    run = run_of(_state(task=_task({"ExitCode": 0})))
    assert (run.ok, run.exit_code, run.seconds, run.argv) == (True, 0, 4.5, COMMAND)


def test_a_failed_task_is_read_from_the_catchs_cause() -> None:
    error = StepError(Error="States.TaskFailed", Cause=json.dumps(_task({"ExitCode": 3, "Reason": "exit status 3"})))
    run = run_of(_state(task_error=error))
    assert (run.ok, run.exit_code, run.output_tail) == (False, 3, "exit status 3")


def test_the_time_limit_is_a_timed_out_run() -> None:
    run = run_of(_state(task_error=StepError(Error="States.Timeout", Cause="")))
    assert (run.ok, run.timed_out, run.seconds) == (False, True, 600.0)


def test_a_task_whose_migration_never_started_says_why() -> None:
    task = _task({"Reason": "CannotPullContainerError: pull access denied"}, StoppedReason="Task failed to start")
    run = run_of(_state(task_error=StepError(Error="States.TaskFailed", Cause=json.dumps(task))))
    assert run.exit_code is None
    assert run.error == "the migration did not run: CannotPullContainerError: pull access denied"


def test_an_error_that_is_no_task_is_reported_as_it_is() -> None:
    error = StepError(Error="ECS.AccessDeniedException", Cause="not authorized to perform: ecs:RunTask")
    run = run_of(_state(task_error=error))
    assert run.exit_code is None and run.error == "not authorized to perform: ecs:RunTask"


def test_a_failed_ecs_tasks_cause_reads_as_its_stop_reason_and_exit_code_with_its_meaning() -> None:
    """What `dbops backups start` prints for a database whose backup task failed (ecs:runTask.sync's cause)."""
    from dbops.aws.stepfunctions import error_message

    cause = {"StoppedReason": "Essential container in task exited", "Containers": [{"Name": "stage", "ExitCode": 3}]}
    assert error_message(json.dumps(cause)) == (
        "task stopped: Essential container in task exited; stage exit code 3 (could not run)"
    )
    cause["Containers"] = [{"Name": "stage", "ExitCode": 2}, {"Name": "sidecar", "ExitCode": 137}]
    assert error_message(json.dumps(cause)).endswith("stage exit code 2 (refused: bad input); sidecar exit code 137")
