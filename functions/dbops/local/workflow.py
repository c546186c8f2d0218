"""The state machines on the local stack: the CDK-synthesized definitions run by moto's Step Functions.

moto's Lambda (use_docker: false) hands every invoke to `LambdaSimpleBackend.invoke`; replacing that one
method with a dispatcher to our in-process handlers runs the real handlers under the real definition.
`deploy_restore_workflow` and `deploy_backup_workflow` synthesize their construct, create one (moto) function
per handler it invokes and the state machine with the functions' ARNs in place of CDK's tokens.

moto's ECS (`EC2ContainerServiceBackend.run_task`) starts no container: for the task definitions a synthesized
workflow runs (the Fargate task), `run_task` is replaced too, and runs the container's command (with the run's
container overrides: command, environment) as a process on this machine against the same PostgreSQL and moto
server, its output as the task's log; the task is then STOPPED with the process's exit code, which ecs:runTask.sync
sees. On AWS a task whose container exits non-zero fails the state with States.TaskFailed; moto's .sync does not
look at exit codes, so here the run_task call fails instead (ECS.ClientException, with the task's last stderr
line): caught by the same States.ALL Catch. moto's port of the Step Functions engine also leaves out the casing of
service-integration requests and responses (Cluster → cluster, tasks → Tasks), which its ecs:runTask relies on:
`_normalise_ecs_request` and `_normalise_ecs_response` put it back for ECS, from botocore's model of the API.
"""

from __future__ import annotations

import functools
import importlib
import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from typing import Any

import boto3
from botocore import xform_name
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.ecs.exceptions import EcsClientException
from moto.ecs.models import EC2ContainerServiceBackend
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_ecs import (
    StateTaskServiceEcs,
)

from dbops import aws
from dbops.local.lambda_runtime import LocalLambdaContext

ACCOUNT = "123456789012"
_original_invoke = LambdaSimpleBackend.invoke
_handlers: dict[str, str] = {}
_original_run_task = EC2ContainerServiceBackend.run_task
_task_families: set[str] = set()  # the task definitions whose runs start a local process


def _synthesize(
    build: Callable[[Any], None], handler_prefix: str
) -> tuple[Any, dict[str, str], dict[str, dict[str, Any]]]:
    """Synthesize what `build(stack)` adds; returns its state machine's DefinitionString, {function logical id:
    handler} for the functions whose handler starts with `handler_prefix`, and the ECS clusters and task definitions
    by logical id (their template resources)."""
    from aws_cdk import App, Stack

    app = App(outdir=tempfile.mkdtemp(prefix="dbops-cdk-"))
    stack = Stack(app, "DbopsLocal")
    build(stack)
    template = app.synth().get_stack_by_name(stack.stack_name).template
    resources = template["Resources"]
    [machine] = [r for r in resources.values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    handlers = {
        lid: r["Properties"]["Handler"]
        for lid, r in resources.items()
        if r["Type"] == "AWS::Lambda::Function" and r["Properties"].get("Handler", "").startswith(handler_prefix)
    }
    ecs = {lid: r for lid, r in resources.items() if r["Type"] in ("AWS::ECS::Cluster", "AWS::ECS::TaskDefinition")}
    return machine["Properties"]["DefinitionString"], handlers, ecs


def _function(stack: Any, construct_id: str, handler: str) -> Any:
    from aws_cdk import aws_lambda as lambda_

    return lambda_.Function(
        stack,
        construct_id,
        runtime=lambda_.Runtime.PYTHON_3_12,
        handler=handler,
        code=lambda_.Code.from_inline("# dispatched in-process on the local stack"),
    )


def synthesize_restore_definition(retry_interval_s: int = 1, retry_attempts: int = 2) -> tuple[Any, dict[str, str]]:
    """Synthesize the RestoreWorkflow construct; returns (DefinitionString, {function logical id: handler})."""
    definition, handlers, _ = _synthesize(_restore_build(retry_interval_s, retry_attempts), "handlers.restore.")
    return definition, handlers


def _restore_build(retry_interval_s: int, retry_attempts: int) -> Callable[[Any], None]:
    def build(stack: Any) -> None:
        from aws_cdk import aws_ecs as ecs

        from infra.restore_workflow import STEP_HANDLERS, RestoreWorkflow, StageTask

        functions = {step: _function(stack, f"{step}Fn", handler) for step, handler in STEP_HANDLERS.items()}
        stage = StageTask(
            stack, "StageTask", image=ecs.ContainerImage.from_registry("dbops-restore:local"), environment={}
        )
        RestoreWorkflow(
            stack,
            "Restore",
            functions=functions,
            stage_task=stage,
            retry_interval_s=retry_interval_s,
            retry_attempts=retry_attempts,
            instance_poll_s=1,  # the local stand-in's instance is ready in seconds, not RDS's tens of minutes
        )

    return build


def synthesize_backup_definition(
    databases: Sequence[str], max_concurrency: int = 4, retry_interval_s: int = 1, retry_attempts: int = 2
) -> tuple[Any, dict[str, str]]:
    """Synthesize the BackupWorkflow construct over the configured database names."""
    build = _backup_build(databases, max_concurrency, retry_interval_s, retry_attempts, fargate_task=True)
    definition, handlers, _ = _synthesize(build, "handlers.backup.")
    return definition, handlers


def _backup_build(
    databases: Sequence[str], max_concurrency: int, retry_interval_s: int, retry_attempts: int, *, fargate_task: bool
) -> Callable[[Any], None]:
    def build(stack: Any) -> None:
        from aws_cdk import aws_ecs as ecs

        from infra.backup_workflow import BackupWorkflow
        from infra.functions import BACKUP
        from infra.restore_workflow import StageTask

        task = None
        if fargate_task:  # the restore's stage task, as the stack shares it
            task = StageTask(stack, "Task", image=ecs.ContainerImage.from_registry("dbops-task:local"), environment={})
        BackupWorkflow(
            stack,
            "Backup",
            function=_function(stack, "BackupFn", BACKUP.handler),
            databases=databases,
            task=task,
            max_concurrency=max_concurrency,
            retry_interval_s=retry_interval_s,
            retry_attempts=retry_attempts,
        )

    return build


def _resolve(token: Any, arns: dict[str, str], region: str) -> str:
    if isinstance(token, str):
        return token
    if "Fn::GetAtt" in token:
        lid = token["Fn::GetAtt"][0]
        return arns.get(lid, f"arn:aws:ecs:{region}:{ACCOUNT}:local/{lid}")
    if "Ref" in token:
        return {
            "AWS::Partition": "aws",
            "AWS::Region": region,
            "AWS::AccountId": ACCOUNT,
            "AWS::URLSuffix": "amazonaws.com",
        }.get(token["Ref"], token["Ref"])
    raise ValueError(f"unexpected token in the state machine definition: {token}")


def _dispatch(
    self: Any, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any
) -> bytes:
    name = function_name.split(":")[-1] if function_name.startswith("arn:") else function_name
    target = _handlers.get(name)
    if target is None:
        result = _original_invoke(self, function_name, qualifier, body, headers, response_headers) or b""
        return result.encode() if isinstance(result, str) else result
    module, attr = target.rsplit(".", 1)
    handler = getattr(importlib.import_module(module), attr)
    try:
        result = handler(json.loads(body or "{}"), LocalLambdaContext(function_name=name))
        return json.dumps(result).encode()
    except Exception as exc:  # the Lambda runtime reports any exception as a function error
        response_headers["x-amz-function-error"] = "Unhandled"
        return json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}).encode()


def function_name(handler: str) -> str:
    """The local function of a handler: handlers.restore.validate -> dbops-restore-validate."""
    return "dbops-" + handler.removeprefix("handlers.").replace(".", "-")


def _run_task(self: Any, cluster_str: str, task_definition_str: str, count: int, overrides: Any, *args: Any) -> Any:
    """moto's run_task, and for a workflow's task definition its container's command run here (see above)."""
    family = task_definition_str.split("/")[-1].split(":")[0]
    if family not in _task_families:
        return _original_run_task(self, cluster_str, task_definition_str, count, overrides, *args)
    started_by, tags, launch_type, *rest = args
    if rest:
        rest[0] = None  # the network configuration: the local stand-in has no VPC, the process runs here
    started = _original_run_task(
        self, cluster_str, task_definition_str, count, overrides, started_by, tags, launch_type, *rest
    )
    for task in started:
        _run_container(self, task, overrides or {})
    return started


def _run_container(backend: Any, task: Any, overrides: dict[str, Any]) -> None:
    [container] = backend.describe_task_definition(task.task_definition_arn).container_definitions
    override: dict[str, Any] = next(
        (o for o in overrides.get("containerOverrides", []) if o.get("name") == container["name"]), {}
    )
    command = list(override.get("command") or container.get("command") or [])
    if command and command[0] == "python":
        command[0] = sys.executable
    env = {**os.environ, **{e["name"]: e["value"] for e in override.get("environment", [])}}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    sys.stdout.write(done.stdout)  # the task's log (EMF metrics included)
    sys.stdout.flush()
    sys.stderr.write(done.stderr)
    for each in task.containers:
        each.exitCode = done.returncode
        each.last_status = "STOPPED"
    task.desired_status = "STOPPED"
    task.last_status = "STOPPED"
    if done.returncode != 0:
        task.stopped_reason = "Essential container in task exited"
        last = (done.stderr.strip().splitlines() or ["no error output"])[-1]
        raise EcsClientException(f"essential container exited with code {done.returncode}: {last}")


@functools.cache
def _ecs_operations() -> dict[str, Any]:
    """botocore's ECS operation models by Python name (run_task, describe_tasks)."""
    model = boto3.session.Session().client("ecs", region_name="us-east-1").meta.service_model
    return {xform_name(name): model.operation_model(name) for name in model.operation_names}


def _normalise_ecs_request(
    self: Any, parameters: dict[str, Any], boto_service_name: str | None = None, service_action_name: str | None = None
) -> None:
    operation = _ecs_operations()[self._get_boto_service_action(service_action_name)]
    self._to_boto_request(parameters, operation.input_shape)


def _normalise_ecs_response(
    self: Any, response: Any, boto_service_name: str | None = None, service_action_name: str | None = None
) -> None:
    operation = _ecs_operations()[self._get_boto_service_action(service_action_name)]
    self._from_boto_response(response, operation.output_shape)


def _deploy_tasks(ecs_resources: dict[str, dict[str, Any]]) -> None:
    """The workflow's clusters and task definitions in the (moto) account, named by their logical ids (the names
    the definition's tokens resolve to), each task definition's runs started here."""
    client = aws.client("ecs")
    for lid, resource in ecs_resources.items():
        if resource["Type"] == "AWS::ECS::Cluster":
            client.create_cluster(clusterName=lid)
            continue
        [container] = resource["Properties"]["ContainerDefinitions"]
        family = resource["Properties"].get("Family", lid)  # the name the definition runs it by
        client.register_task_definition(
            family=family,
            networkMode="bridge",
            containerDefinitions=[
                {"name": container["Name"], "image": "dbops-task:local", "memory": 512, "command": container["Command"]}
            ],
        )
        _task_families.add(family)
    if ecs_resources:
        EC2ContainerServiceBackend.run_task = _run_task  # type: ignore[method-assign,assignment]
        StateTaskServiceEcs._normalise_parameters = _normalise_ecs_request  # type: ignore[method-assign]
        StateTaskServiceEcs._normalise_response = _normalise_ecs_response  # type: ignore[method-assign]


def _deploy(
    definition: Any,
    handlers: dict[str, str],
    machine_name: str,
    region: str,
    ecs_resources: dict[str, dict[str, Any]] | None = None,
) -> str:
    """Create (or reuse) a function per handler and the state machine in the (moto) account; returns its ARN."""
    _deploy_tasks(ecs_resources or {})
    iam = aws.client("iam")
    try:
        role = iam.get_role(RoleName="dbops-local")["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        policy = json.dumps({"Version": "2012-10-17", "Statement": []})
        role = iam.create_role(RoleName="dbops-local", AssumeRolePolicyDocument=policy)["Role"]["Arn"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("index.py", "# dispatched in-process\n")
    functions = aws.client("lambda")
    arns: dict[str, str] = {}
    for lid, handler in handlers.items():
        name = function_name(handler)
        try:
            arns[lid] = functions.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
        except functions.exceptions.ResourceNotFoundException:
            arns[lid] = functions.create_function(
                FunctionName=name, Runtime="python3.12", Role=role, Handler=handler, Code={"ZipFile": buf.getvalue()}
            )["FunctionArn"]
        _handlers[name] = handler
    if isinstance(definition, dict) and "Fn::Join" in definition:
        text = "".join(_resolve(part, arns, region) for part in definition["Fn::Join"][1])
    else:
        text = str(definition)
    LambdaSimpleBackend.invoke = _dispatch  # type: ignore[method-assign]
    machine = aws.client("stepfunctions").create_state_machine(name=machine_name, definition=text, roleArn=role)
    return str(machine["stateMachineArn"])


def deploy_restore_workflow(region: str = "us-east-1", retry_interval_s: int = 1, retry_attempts: int = 2) -> str:
    """The restore state machine and its step functions in the (moto) account; returns the state machine ARN."""
    build = _restore_build(retry_interval_s, retry_attempts)
    definition, handlers, ecs_resources = _synthesize(build, "handlers.restore.")
    return _deploy(definition, handlers, "dbops-restore", region, ecs_resources)


def deploy_backup_workflow(
    databases: Sequence[str],
    *,
    max_concurrency: int = 4,
    name: str = "dbops-backup",
    region: str = "us-east-1",
    retry_interval_s: int = 1,
    retry_attempts: int = 2,
    fargate_task: bool = True,
) -> str:
    """The backup state machine over `databases` (the configured names, as cdk.json gives them to the stack) and
    the Backup function in the (moto) account; returns the state machine ARN. With `fargate_task` (the stack with
    restore_task_image), each database is planned first and backed up by the function or by the task, whose
    runs start `python -m handlers.backup_task` here."""
    build = _backup_build(databases, max_concurrency, retry_interval_s, retry_attempts, fargate_task=fargate_task)
    definition, handlers, ecs_resources = _synthesize(build, "handlers.backup.")
    return _deploy(definition, handlers, name, region, ecs_resources)
