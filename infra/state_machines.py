"""What the dbops state machines (backup, restore) share."""

from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct


def logical_id(construct: Construct | lambda_.IFunction) -> str:
    stack = Stack.of(construct)
    return str(stack.resolve(stack.get_logical_id(construct.node.default_child)))  # type: ignore[arg-type]


def invoke_grant_reasons(functions: Iterable[lambda_.IFunction]) -> dict[str, str]:
    """cdk-nag: the wildcards in Step Functions' generated policy for Lambda tasks, each with its reason."""
    reasons = {
        "AwsSolutions-IAM5[Resource::*]": "X-Ray tracing and log delivery actions have no resource-level permissions.",
    }
    for function in functions:
        reasons[f"AwsSolutions-IAM5[Resource::<{logical_id(function)}.Arn>:*]"] = (
            "Invoking a step function's versions and aliases (<arn>:*), as Step Functions' Lambda task grants."
        )
    return reasons


def acknowledge(state_machine: sfn.StateMachine, reasons: dict[str, str]) -> None:
    for rule, reason in reasons.items():
        Validations.of(state_machine).acknowledge(Acknowledgment(id=rule, reason=reason))
