"""The restore state machine on the local stack: the CDK-synthesized definition run by moto's Step Functions.

moto's Lambda (use_docker: false) hands every invoke to `LambdaSimpleBackend.invoke`; replacing that one
method with a dispatcher to our in-process handlers runs the real handlers under the real definition.
"""

from __future__ import annotations

import importlib
import io
import json
import tempfile
import zipfile
from typing import Any

from moto.awslambda_simple.models import LambdaSimpleBackend

from dbops import aws
from dbops.local.lambda_runtime import LocalLambdaContext

ACCOUNT = "123456789012"
FUNCTION_PREFIX = "dbops-restore-"
_original_invoke = LambdaSimpleBackend.invoke
_handlers: dict[str, str] = {}


def synthesize_restore_definition(retry_interval_s: int = 1, retry_attempts: int = 2) -> tuple[Any, dict[str, str]]:
    """Synthesize the RestoreWorkflow construct; returns (DefinitionString, {function logical id: handler})."""
    from aws_cdk import App, Stack
    from aws_cdk import aws_ecs as ecs
    from aws_cdk import aws_lambda as lambda_

    from infra.restore_workflow import STEP_HANDLERS, RestoreWorkflow, StageTask

    app = App(outdir=tempfile.mkdtemp(prefix="dbops-cdk-"))
    stack = Stack(app, "DbopsRestoreLocal")
    functions = {
        step: lambda_.Function(
            stack,
            f"{step}Fn",
            runtime=lambda_.Runtime.PYTHON_3_12,
            handler=handler,
            code=lambda_.Code.from_inline("# dispatched in-process on the local stack"),
        )
        for step, handler in STEP_HANDLERS.items()
    }
    stage = StageTask(stack, "StageTask", image=ecs.ContainerImage.from_registry("dbops-restore:local"), environment={})
    RestoreWorkflow(
        stack,
        "Restore",
        functions=functions,
        stage_task=stage,
        retry_interval_s=retry_interval_s,
        retry_attempts=retry_attempts,
    )
    template = app.synth().get_stack_by_name(stack.stack_name).template
    resources = template["Resources"]
    [machine] = [r for r in resources.values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    handlers = {
        lid: r["Properties"]["Handler"]
        for lid, r in resources.items()
        if r["Type"] == "AWS::Lambda::Function" and r["Properties"].get("Handler", "").startswith("handlers.restore.")
    }
    return machine["Properties"]["DefinitionString"], handlers


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


def deploy_restore_workflow(region: str = "us-east-1", retry_interval_s: int = 1, retry_attempts: int = 2) -> str:
    """Create the step functions and the state machine in the (moto) account; returns the state machine ARN."""
    definition, handlers = synthesize_restore_definition(retry_interval_s, retry_attempts)
    role = aws.client("iam").create_role(
        RoleName="dbops-restore-local", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []})
    )["Role"]["Arn"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("index.py", "# dispatched in-process\n")
    arns: dict[str, str] = {}
    for lid, handler in handlers.items():
        name = FUNCTION_PREFIX + handler.rsplit(".", 1)[1]
        arns[lid] = aws.client("lambda").create_function(
            FunctionName=name, Runtime="python3.12", Role=role, Handler=handler, Code={"ZipFile": buf.getvalue()}
        )["FunctionArn"]
        _handlers[name] = handler
    if isinstance(definition, dict) and "Fn::Join" in definition:
        text = "".join(_resolve(part, arns, region) for part in definition["Fn::Join"][1])
    else:
        text = str(definition)
    LambdaSimpleBackend.invoke = _dispatch  # type: ignore[method-assign]
    return str(
        aws.client("stepfunctions").create_state_machine(name="dbops-restore", definition=text, roleArn=role)[
            "stateMachineArn"
        ]
    )
