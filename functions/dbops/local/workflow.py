"""The state machines on the local stack: the CDK-synthesized definitions run by moto's Step Functions.

moto's Lambda (use_docker: false) hands every invoke to `LambdaSimpleBackend.invoke`; replacing that one
method with a dispatcher to our in-process handlers runs the real handlers under the real definition.
`deploy_restore_workflow` and `deploy_backup_workflow` synthesize their construct, create one (moto) function
per handler it invokes and the state machine with the functions' ARNs in place of CDK's tokens.
"""

from __future__ import annotations

import importlib
import io
import json
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from typing import Any

from moto.awslambda_simple.models import LambdaSimpleBackend

from dbops import aws
from dbops.local.lambda_runtime import LocalLambdaContext

ACCOUNT = "123456789012"
_original_invoke = LambdaSimpleBackend.invoke
_handlers: dict[str, str] = {}


def _synthesize(build: Callable[[Any], None], handler_prefix: str) -> tuple[Any, dict[str, str]]:
    """Synthesize what `build(stack)` adds; returns (DefinitionString, {function logical id: handler}) for the one
    state machine and the functions whose handler starts with `handler_prefix`."""
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
    return machine["Properties"]["DefinitionString"], handlers


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
        )

    return _synthesize(build, "handlers.restore.")


def synthesize_backup_definition(
    databases: Sequence[str], max_concurrency: int = 4, retry_interval_s: int = 1, retry_attempts: int = 2
) -> tuple[Any, dict[str, str]]:
    """Synthesize the BackupWorkflow construct over the configured database names."""

    def build(stack: Any) -> None:
        from infra.backup_workflow import BackupWorkflow
        from infra.functions import BACKUP

        BackupWorkflow(
            stack,
            "Backup",
            function=_function(stack, "BackupFn", BACKUP.handler),
            databases=databases,
            max_concurrency=max_concurrency,
            retry_interval_s=retry_interval_s,
            retry_attempts=retry_attempts,
        )

    return _synthesize(build, "handlers.backup.")


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


def _deploy(definition: Any, handlers: dict[str, str], machine_name: str, region: str) -> str:
    """Create (or reuse) a function per handler and the state machine in the (moto) account; returns its ARN."""
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
    definition, handlers = synthesize_restore_definition(retry_interval_s, retry_attempts)
    return _deploy(definition, handlers, "dbops-restore", region)


def deploy_backup_workflow(
    databases: Sequence[str],
    *,
    max_concurrency: int = 4,
    name: str = "dbops-backup",
    region: str = "us-east-1",
    retry_interval_s: int = 1,
    retry_attempts: int = 2,
) -> str:
    """The backup state machine over `databases` (the configured names, as cdk.json gives them to the stack) and
    the Backup function in the (moto) account; returns the state machine ARN."""
    definition, handlers = synthesize_backup_definition(databases, max_concurrency, retry_interval_s, retry_attempts)
    return _deploy(definition, handlers, name, region)
