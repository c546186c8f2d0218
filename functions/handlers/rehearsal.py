"""The steps of a rehearsal in the restore state machine (`mode: rehearse`), one Lambda handler each.

Every handler takes the execution state and returns it updated (dbops.rehearsal.deployed says what each does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from dbops import contract
from dbops.errors import RehearsalRefused
from dbops.rehearsal import deployed
from dbops.rehearsal.deployed_state import RehearsalCall, RehearsalState
from dbops.settings import FunctionSettings
from handlers.events import is_request, refuse
from handlers.observability import emit, logger, parse_execution_state, tracer

Step = Callable[[RehearsalState, FunctionSettings], RehearsalState]


def parse_state(event: Any) -> RehearsalState:
    """PrepareRehearsal gets {"request": ..., "execution": ...}; later steps get the state it returned."""
    return parse_execution_state(event, RehearsalState, RehearsalCall, "rehearsal_id", "rehearsal")


def _entry(step: Step) -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    @logger.inject_lambda_context(clear_state=True)
    @tracer.capture_lambda_handler(capture_response=False)
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        state = parse_state(event)
        logger.append_keys(rehearsal_id=state.rehearsal_id, database=state.request.database)
        logger.info(f"rehearsal step {step.__name__}", extra={"phase": state.phase})
        return step(state, FunctionSettings()).model_dump(mode="json")

    handler.__name__ = step.__name__
    return handler


def _judge(state: RehearsalState, settings: FunctionSettings) -> RehearsalState:
    done, result = deployed.judge_rehearsal(state, settings)
    passed = result.verdict == "pass"
    emit(contract.REHEARSAL_PASSED if passed else contract.REHEARSAL_FAILED, 1, MetricUnit.Count, result.database)
    longest = max((s.lock_s for s in [*result.statements, *result.downgrade_statements]), default=0.0)
    emit(contract.REHEARSAL_LONGEST_LOCK_SECONDS, longest, MetricUnit.Seconds, result.database)
    emit(contract.REHEARSAL_SECONDS, result.timings.total_s, MetricUnit.Seconds, result.database)
    logger.info("rehearsal judged", extra={"verdict": result.verdict, "reasons": result.reasons})
    return done


def _clean_up(state: RehearsalState, settings: FunctionSettings) -> RehearsalState:
    done = deployed.clean_up(state, settings)
    database = state.request.database or settings.databases[0].name
    emit(contract.REHEARSAL_FAILED, 1, MetricUnit.Count, database)
    logger.error("rehearsal could not be completed", extra={"outcome": done.outcome})
    return done


def _prepare(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """PrepareRehearsal; its refusal (a request that does not parse, or RehearsalRefused: nothing was made yet) ends
    the execution in the Succeed state RehearsalRefused (handlers.events.refusal), RehearsalRefused counted."""
    try:
        return prepare_step(event, context)
    except (ValueError, RehearsalRefused) as exc:
        if isinstance(exc, ValueError) and not is_request(event, "rehearsal_id"):
            raise
        request = event.get("request") if isinstance(event, dict) else None
        asked = request.get("database") if isinstance(request, dict) else None
        return refuse(exc, contract.REHEARSAL_REFUSED, FunctionSettings().databases, asked, "prepare")


_judge.__name__ = "judge"
_clean_up.__name__ = "clean_up"
prepare_step = _entry(deployed.prepare)
prepare = _prepare
survey = _entry(deployed.survey)
after_run = _entry(deployed.after_run)
judge = _entry(_judge)
clean_up = _entry(_clean_up)
