"""What the dbops state machines (backup, restore) share."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Protocol

from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.scanners import W3005_REASON, XRAY_POLICY_REASON, acknowledge_cfn_lint, acknowledge_checkov


class FargateTask(Protocol):
    """What running a task needs: the stage task (StageTask) and a rehearsal task (RehearsalTask) both have it."""

    @property
    def cluster(self) -> ecs.ICluster: ...
    @property
    def task_definition(self) -> ecs.TaskDefinition: ...
    @property
    def security_groups(self) -> list[ec2.ISecurityGroup]: ...
    @property
    def subnets(self) -> ec2.SubnetSelection | None: ...


def run_to_completion(
    scope: Construct,
    construct_id: str,
    task: FargateTask,
    overrides: list[tasks.ContainerOverride],
    *,
    timeout: sfn.Timeout,
    result_path: str = sfn.JsonPath.DISCARD,
) -> tasks.EcsRunTask:
    """An ECS Fargate task run to its end (runTask.sync) with its containers' commands and environments overridden
    (values may be JSON paths); by default the state passes through unchanged."""
    return tasks.EcsRunTask(
        scope,
        construct_id,
        integration_pattern=sfn.IntegrationPattern.RUN_JOB,
        cluster=task.cluster,
        task_definition=task.task_definition,
        launch_target=tasks.EcsFargateLaunchTarget(platform_version=ecs.FargatePlatformVersion.LATEST),
        security_groups=task.security_groups or None,
        subnets=task.subnets,
        container_overrides=overrides,
        result_path=result_path,
        task_timeout=timeout,
    )


def override(
    container: ecs.ContainerDefinition, environment: dict[str, str] | None = None, command: list[str] | None = None
) -> tasks.ContainerOverride:
    """One container's command and environment for a run (values may be JSON paths)."""
    variables = [tasks.TaskEnvironmentVariable(name=k, value=v) for k, v in (environment or {}).items()]
    return tasks.ContainerOverride(container_definition=container, command=command, environment=variables or None)


def acknowledge_image_pulls(task_definition: ecs.TaskDefinition) -> None:
    """cdk-nag: the task's execution role pulls its images with ecr:GetAuthorizationToken, which has no resource."""
    role = task_definition.execution_role
    if role is not None:
        Validations.of(role).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="ecr:GetAuthorizationToken, which the task needs to pull its images, has no resource-level "
                "permissions; the pulls themselves are granted on their repositories.",
            )
        )


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


def run_task_grant_reasons(task_definition: ecs.TaskDefinition) -> dict[str, str]:
    """cdk-nag: the wildcard in Step Functions' generated policy for an ECS task (any revision of its one task
    definition), as cdk-nag prints it."""
    td = logical_id(task_definition)

    def select(i: int, sep: str, of: dict[str, Any]) -> dict[str, Any]:
        return {"Fn::Select": [i, {"Fn::Split": [sep, of]}]}

    def text(token: dict[str, Any]) -> str:  # as cdk-nag prints tokens in finding ids
        return json.dumps(token, separators=(",", ":"))

    ref = {"Ref": td}
    family = select(5, ":", ref)
    arn = "arn:" + ":".join(text(select(i, ":", ref)) for i in range(1, 5))
    arn += f":{text(select(0, '/', family))}/{text(select(1, '/', family))}:*"
    return {
        f"AwsSolutions-IAM5[Resource::{arn}]": (
            "Running any revision of the one stage task definition, as Step Functions' ECS task grants."
        )
    }


def acknowledge(state_machine: sfn.StateMachine, reasons: dict[str, str]) -> None:
    """cdk-nag's findings by `reasons`; checkov's and cfn-lint's on every state machine and its policy."""
    for rule, reason in reasons.items():
        Validations.of(state_machine).acknowledge(Acknowledgment(id=rule, reason=reason))
    acknowledge_cfn_lint(state_machine, {"W3005": W3005_REASON})
    policy = state_machine.role.node.try_find_child("DefaultPolicy")
    if policy is not None:
        acknowledge_checkov(policy, {"CKV_AWS_111": XRAY_POLICY_REASON})


def log_group(
    scope: Construct, construct_id: str, retention: logs.RetentionDays, key: kms.IKey | None
) -> logs.LogGroup:
    """A state machine's log group, encrypted with the logs key when there is one."""
    return logs.LogGroup(scope, construct_id, retention=retention, encryption_key=key)
