"""Start a restore execution on the state machine and follow it, state by state, until it ends."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from dbops import aws
from dbops.errors import ConfigError, StorageError
from dbops.restore.models import RestoreRequest

OnState = Callable[[str, str], None]


def start_restore(state_machine_arn: str, request: RestoreRequest, name: str | None = None) -> str:
    label = "drill" if request.mode == "drill" else "restore"
    try:
        resp = aws.client("stepfunctions").start_execution(
            stateMachineArn=state_machine_arn,
            name=name or f"{label}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}",
            input=request.model_dump_json(),
        )
    except (BotoCoreError, ClientError) as exc:
        raise ConfigError(f"cannot start the restore state machine {state_machine_arn}: {exc}") from None
    return str(resp["executionArn"])


def follow(
    execution_arn: str, on_state: OnState | None = None, poll_s: float = 0.5, timeout_s: float = 4 * 3600
) -> dict[str, Any]:
    """Report each state as it is entered or fails; returns describe_execution once it has ended."""
    sfn = aws.client("stepfunctions")
    seen = 0
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            # status first, then history: once the status is final, the history read after it is complete
            description = sfn.describe_execution(executionArn=execution_arn)
            events = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot follow execution {execution_arn}: {exc}") from None
        for event in events[seen:]:
            if on_state is None:
                continue
            if "stateEnteredEventDetails" in event:
                on_state("entered", event["stateEnteredEventDetails"]["name"])
            elif event["type"].endswith("Failed") and event["type"] != "ExecutionFailed":
                details: dict[str, Any] = next((v for k, v in event.items() if k.endswith("FailedEventDetails")), {})
                on_state("failed", f"{details.get('error', '')}")
        seen = len(events)
        if description["status"] != "RUNNING":
            return dict(description)
        if time.monotonic() > deadline:
            raise StorageError(f"execution {execution_arn} still running after {timeout_s:.0f}s")
        time.sleep(poll_s)


def outcome(description: dict[str, Any]) -> str:
    if description["status"] == "SUCCEEDED":
        return str(json.loads(description.get("output") or "{}").get("outcome", "succeeded"))
    return str(description.get("cause") or description.get("error") or description["status"])


def list_restores(state_machine_arn: str, limit: int = 20) -> list[dict[str, Any]]:
    try:
        resp = aws.client("stepfunctions").list_executions(stateMachineArn=state_machine_arn, maxResults=limit)
    except (BotoCoreError, ClientError) as exc:
        raise StorageError(f"cannot list executions of {state_machine_arn}: {exc}") from None
    return list(resp["executions"])
