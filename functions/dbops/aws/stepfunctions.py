"""Step Functions: start an execution, follow it state by state, read its whole history, list machines and runs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from dbops import aws
from dbops.contract import EXIT_DONE, EXIT_MEANINGS
from dbops.errors import StorageError

OnState = Callable[[str, str], None]


def start(machine_arn: str, name: str, payload: str, what: str) -> str:
    """Start an execution named `name` with the JSON `payload`; its ARN. `what` names the machine in an error."""
    try:
        resp = aws.client("stepfunctions").start_execution(stateMachineArn=machine_arn, name=name, input=payload)
    except (BotoCoreError, ClientError) as exc:
        raise StorageError(f"cannot start the {what} state machine {machine_arn}: {exc}") from None
    return str(resp["executionArn"])


def history(execution_arn: str) -> list[dict[str, Any]]:
    """Every event of an execution, oldest first, however many pages it takes."""
    sfn = aws.client("stepfunctions")
    events: list[dict[str, Any]] = []
    token: dict[str, str] = {}
    while True:
        page = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000, **token)
        events += page["events"]
        if not page.get("nextToken"):
            return events
        token = {"nextToken": page["nextToken"]}


def state_outputs(events: list[dict[str, Any]], names: Collection[str]) -> list[tuple[str, dict[str, Any]]]:
    """What each run of the states named passed on, in the order they ended: (state, its output parsed)."""
    exits = [e["stateExitedEventDetails"] for e in events if "stateExitedEventDetails" in e]
    return [(d["name"], json.loads(d.get("output") or "{}")) for d in exits if d["name"] in names]


def _exit_code(container: dict[str, Any]) -> str:
    """`backup exit code 3 (could not run)`: a dbops task's exit code with what it means."""
    code = container.get("ExitCode")
    meaning = EXIT_MEANINGS.get(code) if isinstance(code, int) and code != EXIT_DONE else None
    return f"{container.get('Name')} exit code {code}" + (f" ({meaning})" if meaning else "")


def error_message(cause: str) -> str:
    """A caught error's cause as a person reads it, on one line: a Lambda function's error message (its cause is the
    error as JSON), an ECS task's stop reason and its containers' exit codes, else the cause itself."""
    try:
        parsed = json.loads(cause)
    except ValueError:
        parsed = None
    text = cause
    if isinstance(parsed, dict) and "errorMessage" in parsed:
        text = str(parsed["errorMessage"])
    elif isinstance(parsed, dict) and ("StoppedReason" in parsed or "Containers" in parsed):
        codes = [_exit_code(c) for c in parsed.get("Containers", [])]
        text = "; ".join([f"task stopped: {parsed.get('StoppedReason', 'no reason given')}", *codes])
    return " ".join(text.split())


def running(execution_arn: str) -> bool | None:
    """Whether an execution is still running; None when it cannot be asked (no access, no AWS)."""
    try:
        status = aws.client("stepfunctions").describe_execution(executionArn=execution_arn)["status"]
    except ClientError as exc:
        return False if exc.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist" else None
    except BotoCoreError:
        return None
    return bool(status == "RUNNING")


def _report(events: list[dict[str, Any]], on_state: OnState, exits: bool) -> None:
    for event in events:
        if "stateEnteredEventDetails" in event:
            on_state("entered", event["stateEnteredEventDetails"]["name"])
        elif exits and "stateExitedEventDetails" in event:
            on_state("exited", event["stateExitedEventDetails"]["name"])
        elif event["type"].endswith("Failed") and event["type"] != "ExecutionFailed":
            details: dict[str, Any] = next((v for k, v in event.items() if k.endswith("FailedEventDetails")), {})
            on_state("failed", f"{details.get('error', '')}")


def follow(
    execution_arn: str,
    on_state: OnState | None = None,
    poll_s: float = 0.5,
    timeout_s: float = 4 * 3600,
    on_poll: Callable[[], None] | None = None,
    exits: bool = False,
) -> dict[str, Any]:
    """Report each state as it is entered or fails (and with `exits`, as it is left: the states of a Parallel's
    branches interleave), and call `on_poll` after each look while the execution runs (a caller showing a state's
    progress); returns describe_execution once it has ended."""
    sfn = aws.client("stepfunctions")
    seen = 0
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            # status first, then history: once the status is final, the history read after it is complete
            description = sfn.describe_execution(executionArn=execution_arn)
            events = history(execution_arn)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot follow execution {execution_arn}: {exc}") from None
        if on_state is not None:
            _report(events[seen:], on_state, exits)
        seen = len(events)
        if description["status"] != "RUNNING":
            return dict(description)
        if on_poll is not None:
            on_poll()
        if time.monotonic() > deadline:
            raise StorageError(f"execution {execution_arn} still running after {timeout_s:.0f}s")
        time.sleep(poll_s)


def outcome(description: dict[str, Any]) -> str:
    """How an ended execution ended: its output's `outcome`, or its failure's cause."""
    if description["status"] == "SUCCEEDED":
        return str(json.loads(description.get("output") or "{}").get("outcome", "succeeded"))
    return str(description.get("cause") or description.get("error") or description["status"])


def state_machines() -> list[dict[str, Any]]:
    """Every state machine of the account and region."""
    try:
        pages = aws.client("stepfunctions").get_paginator("list_state_machines").paginate()
        return [m for page in pages for m in page["stateMachines"]]
    except (BotoCoreError, ClientError) as exc:
        raise StorageError(f"cannot list the state machines: {exc}") from None


def executions(machine_arn: str, limit: int) -> list[dict[str, Any]]:
    """The newest `limit` executions of a state machine."""
    try:
        resp = aws.client("stepfunctions").list_executions(stateMachineArn=machine_arn, maxResults=limit)
    except (BotoCoreError, ClientError) as exc:
        raise StorageError(f"cannot list executions of {machine_arn}: {exc}") from None
    return list(resp["executions"])
