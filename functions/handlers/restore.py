"""Restore workflow steps, one Lambda handler each, called by the Step Functions state machine.

Every handler takes the execution state and returns it updated (the state machine passes it on whole).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from dbops import contract
from dbops.aws import rds
from dbops.errors import BackupNotFound, RestoreRefused
from dbops.postgres.connection import database_spec
from dbops.rehearsal import scratch
from dbops.restore import expired_copies, outcome, point_in_time_steps, steps
from dbops.restore.models import RestoreRequest, RestoreState
from dbops.settings import FunctionSettings
from handlers.events import databases_to_run, is_request, parse_invocation, refuse
from handlers.observability import emit, logged_progress, logged_warning, logger, parse, parse_execution_state, tracer

Step = Callable[[RestoreState, FunctionSettings], RestoreState]


def parse_state(event: Any) -> RestoreState:
    """Validate gets {"request": ...} (or the bare request); later steps get the state it returned.

    A step that failed in Validate is caught with the input it had, plus $.error (and $.rollback_error when its
    Rollback failed too): kept, like every other key, and a key the state does not know is refused.
    """
    return parse_execution_state(event, RestoreState, RestoreRequest, "restore_id", "restore")


def _run(step: Step, event: dict[str, Any]) -> dict[str, Any]:
    return _call(step, parse_state(event))


def _call(step: Step, state: RestoreState) -> dict[str, Any]:
    logger.append_keys(restore_id=state.restore_id, database=state.database or state.request.database)
    logger.info(f"restore step {step.__name__}", extra={"mode": state.request.mode, "dry_run": state.request.dry_run})
    new_state = step(state, FunctionSettings())
    return new_state.model_dump(mode="json")


def _entry(step: Step) -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    @logger.inject_lambda_context(clear_state=True)
    @tracer.capture_lambda_handler(capture_response=False)
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return _run(step, event)

    handler.__name__ = step.__name__
    return handler


# what refuses a request: its own fault (a name, a moment, a backup that does not exist), nothing touched. A damaged
# backup (VerificationFailed) or a server that failed is no refusal: those fail the execution, and page
REFUSALS = (RestoreRefused, BackupNotFound)


def _refused(step: Step, exc: Exception, state: RestoreState | None) -> dict[str, Any]:
    """The request refused (handlers.events.refuse): RestoreRefused counted, never alarmed; no notice."""
    asked = state.request.database if state else None
    restore_id = state.restore_id if state else None
    databases = FunctionSettings().databases
    return refuse(exc, contract.RESTORE_REFUSED, databases, asked, step.__name__, restore_id=restore_id)


def _refusable(step: Step) -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    """A step that may refuse the request: a request that does not parse, or a refusal raised by the step, ends the
    execution refused (handlers.events.refusal); anything else is raised as by every step."""

    @logger.inject_lambda_context(clear_state=True)
    @tracer.capture_lambda_handler(capture_response=False)
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        try:
            state = parse_state(event)
        except ValueError as exc:
            if not is_request(event, "restore_id"):
                raise
            return _refused(step, exc, None)
        try:
            return _call(step, state)
        except REFUSALS as exc:
            return _refused(step, exc, state)

    handler.__name__ = step.__name__
    return handler


validate = _refusable(point_in_time_steps.validate)
restore_to_point_in_time = _entry(point_in_time_steps.restore_to_point_in_time)
wait_for_instance = _entry(point_in_time_steps.wait_for_instance)
dump_point_in_time = _refusable(point_in_time_steps.dump_point_in_time)
safety_backup = _entry(steps.safety_backup)
stop_application = _entry(steps.stop_application)


def _stage(state: RestoreState, settings: FunctionSettings) -> RestoreState:
    return steps.stage(state, settings, progress=logged_progress("restore progress"), warn=logged_warning)


_stage.__name__ = "stage"
stage = _entry(_stage)
check = _entry(steps.check)
swap = _entry(steps.swap)
start_application = _entry(steps.start_application)
rollback = _entry(point_in_time_steps.rollback)


def _finish(state: RestoreState, settings: FunctionSettings) -> RestoreState:
    done = point_in_time_steps.finish(state, settings)
    if not state.request.dry_run and state.database:
        emit(
            contract.DRILL_SUCCEEDED if state.drill else contract.RESTORE_SUCCEEDED, 1, MetricUnit.Count, state.database
        )
        emit(
            contract.DRILL_SECONDS if state.drill else contract.RESTORE_SECONDS,
            outcome.elapsed(state),
            MetricUnit.Seconds,
            state.database,
        )
        if state.request.disaster:
            _emit_disaster(state)
    return done


def _emit_disaster(state: RestoreState) -> None:
    """A disaster drill's restore time and recovery point: how old the replicated backup was when it started."""
    assert state.database is not None
    emit(contract.DISASTER_RESTORE_SECONDS, outcome.elapsed(state), MetricUnit.Seconds, state.database)
    if state.started_at is not None and state.backup_finished_at is not None:
        age = (state.started_at - state.backup_finished_at).total_seconds()
        emit(contract.DISASTER_RECOVERY_POINT_AGE_SECONDS, max(age, 0.0), MetricUnit.Seconds, state.database)


def _notify_failure(state: RestoreState, settings: FunctionSettings) -> RestoreState:
    done = steps.notify_failure(state, settings)
    database = state.database or state.request.database or settings.databases[0].name
    emit(contract.DRILL_FAILED if state.drill else contract.RESTORE_FAILED, 1, MetricUnit.Count, database)
    if state.request.disaster:
        emit(contract.DISASTER_DRILL_FAILED, 1, MetricUnit.Count, database)
    logger.error("restore failed", extra={"outcome": done.outcome})
    return done


_finish.__name__ = "finish"
_notify_failure.__name__ = "notify_failure"
finish = _entry(_finish)
notify_failure = _entry(_notify_failure)


class ExpiredCopiesInvocation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    database: str | None = Field(default=None, description="omit to clean up after every configured database")


def parse_expired_copies_event(event: Any) -> ExpiredCopiesInvocation:
    return parse_invocation(ExpiredCopiesInvocation, event, "expired copies event")


@logger.inject_lambda_context(correlation_id_path="id", clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def drop_expired_copies(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Daily (EventBridge) or a direct invoke naming a database: the previous databases kept after restores are
    dropped once their time is up, also when no later restore comes to drop them; and the scratch databases of
    migration rehearsals that died (no keeper session left), also when no later rehearsal comes to drop them; and
    the work databases of restores that have ended."""
    settings = FunctionSettings()
    invocation = parse_expired_copies_event(event)
    dropped, stale, orphaned = {}, {}, {}
    for config in databases_to_run(settings.databases, invocation.database):
        names = expired_copies.drop(settings, config.name)
        emit(contract.PRE_RESTORE_COPIES_DROPPED, len(names), MetricUnit.Count, config.name)
        logger.info("expired pre-restore copies dropped", extra={"database": config.name, "dropped": names})
        dropped[config.name] = names
        stale[config.name] = scratch.drop_stale(database_spec(config))
        if stale[config.name]:
            logger.warning("dead rehearsals' scratch databases dropped", extra={"dropped": stale[config.name]})
        orphaned[config.name] = expired_copies.drop_orphaned_work(settings, config.name)
        if orphaned[config.name]:
            logger.warning("ended restores' work databases dropped", extra={"dropped": orphaned[config.name]})
    return {"dropped": dropped, "stale_rehearsals": stale, "orphaned_work": orphaned}


class ExecutionStatusChange(BaseModel):
    """EventBridge's "Step Functions Execution Status Change" for a restore execution that ended."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    detail_type: Literal["Step Functions Execution Status Change"] = Field(alias="detail-type")
    detail: ExecutionDetail


class ExecutionDetail(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    execution_arn: str = Field(alias="executionArn", min_length=1)
    status: str


ExecutionStatusChange.model_rebuild()


def parse_sweep_event(event: Any) -> str | None:
    """The ended execution whose temporary instance to delete, or None for the daily sweep of them all."""
    if isinstance(event, dict) and event.get("detail-type") == "Step Functions Execution Status Change":
        return parse(ExecutionStatusChange, event, "execution status change").detail.execution_arn
    parse_invocation(SweepInvocation, event, "sweep event")
    return None


class SweepInvocation(BaseModel):
    model_config = ConfigDict(extra="forbid")


@logger.inject_lambda_context(correlation_id_path="id", clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def sweep_temporary_instances(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """A restore execution that ended (aborted, timed out, failed: EventBridge) or the daily sweep: delete the
    point-in-time restores' temporary instances no running execution needs."""
    execution = parse_sweep_event(event)
    deleted = rds.sweep(execution)
    if deleted:
        logger.warning("temporary instances deleted", extra={"execution": execution, "deleted": deleted})
    return {"deleted": deleted}
