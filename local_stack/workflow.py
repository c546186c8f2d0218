"""The state machines on the local stack: the CDK-synthesized definitions run by moto's Step Functions.

moto's Lambda (use_docker: false) hands every invoke to `LambdaSimpleBackend.invoke`; replacing that one
method with a dispatcher to our in-process handlers runs the real handlers under the real definition.
`deploy_restore_workflow` and `deploy_backup_workflow` synthesize their construct, create one (moto) function
per handler it invokes and the state machine with the functions' ARNs in place of CDK's tokens.

moto's ECS (`EC2ContainerServiceBackend.run_task`) starts no container: for the task definitions a synthesized
workflow runs (the Fargate tasks), `run_task` is replaced too, and runs the task's containers (with the run's
container overrides: command, environment) as processes on this machine against the same PostgreSQL and moto
server, as ECS would: the containers others depend on first (until their health check passes when the dependency
is HEALTHY), the essential one to its end, then SIGTERM to the others (SIGKILL after their stopTimeout); `secrets`
read from (moto's) Secrets Manager into the environment; dbops' image sees this machine's environment, another
image (an application's) only its own, in the folder `local_images` gives it; each task its own TMPDIR. The task is
then STOPPED with the containers' exit codes and its startedAt/stoppedAt, which ecs:runTask.sync sees.
On AWS a task whose container exits non-zero fails the state with States.TaskFailed; moto's .sync does not
look at exit codes, so here the run_task call fails instead (ECS.ClientException, with the task's last stderr
line): caught by the same States.ALL Catch. moto's port of the Step Functions engine also leaves out the casing of
service-integration requests and responses (Cluster → cluster, tasks → Tasks), which its ecs:runTask relies on:
`_normalise_ecs_request` and `_normalise_ecs_response` put it back for ECS, from botocore's model of the API.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore import xform_name
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.ecs.exceptions import EcsClientException
from moto.ecs.models import Container, EC2ContainerServiceBackend
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_ecs import (
    StateTaskServiceEcs,
)

from dbops import aws
from local_stack import asl_cache
from local_stack.lambda_runtime import LocalLambdaContext

if TYPE_CHECKING:
    from infra.rehearsal_settings import DatabaseRehearsal

ACCOUNT = "123456789012"
_original_invoke = LambdaSimpleBackend.invoke
_handlers: dict[str, str] = {}
# a function's own environment over this process's (the DR stack's functions: its bucket and databases), applied
# while its handler runs: the local stack runs one such execution at a time
_environments: dict[str, dict[str, str]] = {}
_environment_lock = threading.Lock()
_original_run_task = EC2ContainerServiceBackend.run_task
_task_families: set[str] = set()  # the task definitions whose runs start a local process


def _synthesize(
    build: Callable[[Any], None], handler_prefix: str | tuple[str, ...]
) -> tuple[Any, dict[str, str], dict[str, dict[str, Any]]]:
    """Synthesize what `build(stack)` adds; returns its state machine's DefinitionString, {function logical id:
    handler} for the functions whose handler starts with `handler_prefix`, and the ECS clusters and task definitions
    and the secrets they name, by logical id (their template resources)."""
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
    kinds = ("AWS::ECS::Cluster", "AWS::ECS::TaskDefinition", "AWS::SecretsManager::Secret")
    ecs = {lid: r for lid, r in resources.items() if r["Type"] in kinds}
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
    definition, handlers, _ = _synthesize(_restore_build(retry_interval_s, retry_attempts, {}), HANDLERS)
    return definition, handlers


HANDLERS = ("handlers.restore.", "handlers.rehearsal.")
LOCAL_STACK = "dbops-local"
OUR_IMAGE = "dbops-restore:local"
# a migration image of the local stack: the folder its command runs in (the image's working directory)
local_images: dict[str, Path] = {}


def _restore_build(
    retry_interval_s: int, retry_attempts: int, rehearsals: Mapping[str, DatabaseRehearsal]
) -> Callable[[Any], None]:
    def build(stack: Any) -> None:
        from aws_cdk import aws_ecs as ecs
        from aws_cdk import aws_kms as kms
        from aws_cdk import aws_s3 as s3

        from infra.rehearsal_settings import rehearsal_secret_name
        from infra.rehearsal_tasks import RehearsalTask
        from infra.restore_workflow import REHEARSAL_STEP_HANDLERS, STEP_HANDLERS, RestoreWorkflow, StageTask

        steps = {**STEP_HANDLERS, **(REHEARSAL_STEP_HANDLERS if rehearsals else {})}
        functions = {step: _function(stack, f"{step}Fn", handler) for step, handler in steps.items()}
        stage = StageTask(stack, "StageTask", image=ecs.ContainerImage.from_registry(OUR_IMAGE), environment={})
        key = kms.Key(stack, "Key")
        bucket = s3.Bucket(stack, "Bucket", encryption_key=key)
        tasks = [
            RehearsalTask(
                stack,
                f"Rehearsal{i}",
                database=name,
                settings=settings,
                secret_name=rehearsal_secret_name(LOCAL_STACK, name),
                migration_image=ecs.ContainerImage.from_registry(settings.image),
                watcher_image=ecs.ContainerImage.from_registry(OUR_IMAGE),
                watcher_environment={},
                cluster=stage.cluster,
                bucket=bucket,
                key=key,
            )
            for i, (name, settings) in enumerate(rehearsals.items())
        ]
        RestoreWorkflow(
            stack,
            "Restore",
            functions=functions,
            stage_task=stage,
            retry_interval_s=retry_interval_s,
            retry_attempts=retry_attempts,
            instance_poll_s=1,  # the local stand-in's instance is ready in seconds, not RDS's tens of minutes
            rehearsal_tasks=tasks,
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
        from infra.function_specs import BACKUP
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
    with _own_environment(_environments.get(name)):
        try:
            result = handler(json.loads(body or "{}"), LocalLambdaContext(function_name=name))
            return json.dumps(result).encode()
        except Exception as exc:  # the Lambda runtime reports any exception as a function error
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}).encode()


@contextlib.contextmanager
def _own_environment(environment: Mapping[str, str] | None) -> Iterator[None]:
    """The function's own environment over this process's while its handler runs (none: nothing changes)."""
    if not environment:
        yield
        return
    with _environment_lock:
        saved = {k: os.environ.get(k) for k in environment}
        os.environ.update(environment)
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


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


def _secret_value(value_from: str) -> str:
    """ECS's secrets: <secret ARN>[:json-key[:version-stage[:version-id]]]."""
    parts = value_from.split(":")
    arn, key = ":".join(parts[:7]), (parts[7] if len(parts) > 7 else "")
    value = aws.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
    return str(json.loads(value).get(key, "")) if key else str(value)


def _environment(container: dict[str, Any], override: dict[str, Any]) -> tuple[dict[str, str], Path | None]:
    """A container's environment and folder: ours (the dbops image) sees this machine's environment (the local
    stack's settings); any other image (an application's) only its own variables, its secrets, and a PATH with
    this Python's scripts, in the folder `local_images` gives it."""
    own = {e["name"]: e["value"] for e in container.get("environment", [])}
    own.update({e["name"]: e["value"] for e in override.get("environment", [])})
    own.update({s["name"]: _secret_value(s["valueFrom"]) for s in container.get("secrets", [])})
    if container["image"] == OUR_IMAGE or container["image"].startswith("dbops-"):
        return {**os.environ, **own}, None
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', os.defpath)}"
    base = {k: os.environ[k] for k in ("HOME", "LANG", "TMPDIR") if k in os.environ}
    return {**base, "PATH": path, **own}, local_images.get(container["image"])


def _command(container: dict[str, Any], override: dict[str, Any]) -> list[str]:
    command = list(override.get("command") or container.get("command") or [])
    if command and command[0] == "python":
        command[0] = sys.executable
    return command


def _healthy(container: dict[str, Any], env: dict[str, str], proc: subprocess.Popen[str]) -> bool:
    """Run the container's health check (CMD-SHELL) until it passes, as ECS would; False if it never does."""
    check = container.get("healthCheck") or {}
    command = check.get("command") or ["CMD-SHELL", "true"]
    tries = int(check.get("retries", 3)) * max(1, int(check.get("interval", 30)))
    for _ in range(tries * 10):
        if proc.poll() is not None:
            return False
        if subprocess.run(["sh", "-c", command[1]], env=env, check=False).returncode == 0:
            return True
        time.sleep(0.1)
    return False


def _stop(proc: subprocess.Popen[str], timeout: float) -> None:
    """As ECS stops a container: SIGTERM, then SIGKILL after its stopTimeout."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _moto_container(task_definition: Any, definition: dict[str, Any]) -> Any:
    container = Container(task_definition)  # type: ignore[abstract]
    container.name, container.image = definition["name"], definition.get("image")
    container.command, container.environment = definition.get("command"), definition.get("environment")
    return container


def _run_container(backend: Any, task: Any, overrides: dict[str, Any]) -> None:
    """The task's containers as processes: those others depend on first (until HEALTHY when so required), then the
    essential one to its end; then the others are stopped (SIGTERM, SIGKILL after stopTimeout) as ECS does when an
    essential container exits."""
    task_definition = backend.describe_task_definition(task.task_definition_arn)
    containers = task_definition.container_definitions
    task.containers = [_moto_container(task_definition, c) for c in containers]  # moto makes the first one only
    task.started_at = time.time()  # as ECS describes a task: when it ran and when it stopped (moto sets neither)
    by_override = {o.get("name"): o for o in overrides.get("containerOverrides", [])}
    with tempfile.TemporaryDirectory(prefix="dbops-task-") as scratch:
        sidecars: list[tuple[dict[str, Any], subprocess.Popen[str]]] = []
        essential = [c for c in containers if c.get("essential", True)]
        healthy_first = {
            d["containerName"] for c in essential for d in c.get("dependsOn", []) if d["condition"] == "HEALTHY"
        }
        for container in [c for c in containers if not c.get("essential", True)]:
            env, folder = _environment(container, by_override.get(container["name"], {}))
            env["TMPDIR"] = scratch  # each task its own /tmp
            proc = subprocess.Popen(
                _command(container, by_override.get(container["name"], {})), env=env, cwd=folder, text=True
            )
            sidecars.append((container, proc))
            if container["name"] in healthy_first and not _healthy(container, env, proc):
                _stop(proc, 5)
                raise EcsClientException(f"container {container['name']} did not become healthy")
        done = []
        for container in essential:
            env, folder = _environment(container, by_override.get(container["name"], {}))
            env["TMPDIR"] = scratch
            run = subprocess.run(
                _command(container, by_override.get(container["name"], {})),
                env=env,
                cwd=folder,
                capture_output=True,
                text=True,
                check=False,
            )
            sys.stdout.write(run.stdout)  # the task's log (EMF metrics included)
            sys.stdout.flush()
            sys.stderr.write(run.stderr)
            done.append((container, run.returncode, run.stderr))
        for container, proc in sidecars:
            _stop(proc, float(container.get("stopTimeout", 30)))
            done.append((container, proc.returncode, ""))
    task.stopped_at = time.time()
    codes = {c["name"]: code for c, code, _ in done}
    for each in task.containers:
        each.exitCode = codes.get(each.name)
        each.last_status = "STOPPED"
    task.desired_status = "STOPPED"
    task.last_status = "STOPPED"
    failed = [(c, code, err) for c, code, err in done if c.get("essential", True) and code != 0]
    if failed:
        task.stopped_reason = "Essential container in task exited"
        _, code, stderr = failed[0]
        last = (stderr.strip().splitlines() or ["no error output"])[-1]
        raise EcsClientException(f"essential container exited with code {code}: {last}")


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


def _resolve_secret(value_from: Any, secrets: dict[str, str]) -> str:
    """A container secret's valueFrom: {"Fn::Join": ["", [{"Ref": <secret>}, ":url::"]]} -> <ARN>:url::."""
    if isinstance(value_from, str):
        return value_from
    parts = value_from["Fn::Join"][1]
    return "".join(part if isinstance(part, str) else secrets[part["Ref"]] for part in parts)


def _container(definition: dict[str, Any], secrets: dict[str, str]) -> dict[str, Any]:
    """A template's container definition as RegisterTaskDefinition takes it (what the local runs need)."""
    container: dict[str, Any] = {
        "name": definition["Name"],
        "image": definition["Image"] if isinstance(definition["Image"], str) else OUR_IMAGE,
        "memory": 512,
        "command": definition.get("Command", []),
        "essential": definition.get("Essential", True),
        "environment": [{"name": e["Name"], "value": e["Value"]} for e in definition.get("Environment", [])],
        "secrets": [
            {"name": e["Name"], "valueFrom": _resolve_secret(e["ValueFrom"], secrets)}
            for e in definition.get("Secrets", [])
        ],
        "dependsOn": [
            {"containerName": d["ContainerName"], "condition": d["Condition"]} for d in definition.get("DependsOn", [])
        ],
    }
    if "HealthCheck" in definition:
        check = definition["HealthCheck"]
        container["healthCheck"] = {
            "command": check["Command"],
            "interval": check.get("Interval", 30),
            "retries": check.get("Retries", 3),
        }
    if "StopTimeout" in definition:
        container["stopTimeout"] = definition["StopTimeout"]
    return container


def _deploy_tasks(ecs_resources: dict[str, dict[str, Any]]) -> None:
    """The workflow's clusters, task definitions and their secrets in the (moto) account, named by their logical
    ids (the names the definition's tokens resolve to), each task definition's runs started here."""
    client = aws.client("ecs")
    secrets: dict[str, str] = {}
    for lid, resource in ecs_resources.items():
        if resource["Type"] == "AWS::SecretsManager::Secret":
            secrets[lid] = _local_secret(resource["Properties"]["Name"])
    for lid, resource in ecs_resources.items():
        if resource["Type"] == "AWS::ECS::Cluster":
            client.create_cluster(clusterName=lid)
            continue
        if resource["Type"] != "AWS::ECS::TaskDefinition":
            continue
        family = resource["Properties"].get("Family", lid)  # the name the definition runs it by
        client.register_task_definition(
            family=family,
            networkMode="bridge",
            containerDefinitions=[_container(c, secrets) for c in resource["Properties"]["ContainerDefinitions"]],
        )
        _task_families.add(family)
    if ecs_resources:
        EC2ContainerServiceBackend.run_task = _run_task  # type: ignore[method-assign,assignment]
        StateTaskServiceEcs._normalise_parameters = _normalise_ecs_request  # type: ignore[method-assign]
        StateTaskServiceEcs._normalise_response = _normalise_ecs_response  # type: ignore[method-assign]


def _local_secret(name: str) -> str:
    """The secret of that name in the (moto) account, made if missing; its ARN."""
    client = aws.client("secretsmanager")
    try:
        return str(client.describe_secret(SecretId=name)["ARN"])
    except client.exceptions.ResourceNotFoundException:
        return str(client.create_secret(Name=name, SecretString="{}")["ARN"])


def _deploy(
    definition: Any,
    handlers: dict[str, str],
    machine_name: str,
    region: str,
    ecs_resources: dict[str, dict[str, Any]] | None = None,
    *,
    names: Callable[[str], str] = function_name,
    environment: Mapping[str, str] | None = None,
) -> str:
    """Create (or reuse) a function per handler (named by `names`, with its own `environment` over this process's)
    and the state machine in the (moto) account; returns its ARN."""
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
        name = names(handler)
        try:
            arns[lid] = functions.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
        except functions.exceptions.ResourceNotFoundException:
            arns[lid] = functions.create_function(
                FunctionName=name, Runtime="python3.12", Role=role, Handler=handler, Code={"ZipFile": buf.getvalue()}
            )["FunctionArn"]
        _handlers[name] = handler
        if environment:
            _environments[name] = dict(environment)
    if isinstance(definition, dict) and "Fn::Join" in definition:
        text = "".join(_resolve(part, arns, region) for part in definition["Fn::Join"][1])
    else:
        text = str(definition)
    LambdaSimpleBackend.invoke = _dispatch  # type: ignore[method-assign]
    asl_cache.install()
    machine = aws.client("stepfunctions").create_state_machine(name=machine_name, definition=text, roleArn=role)
    return str(machine["stateMachineArn"])


def deploy_restore_workflow(
    region: str = "us-east-1",
    retry_interval_s: int = 1,
    retry_attempts: int = 2,
    rehearsals: Mapping[str, DatabaseRehearsal] | None = None,
) -> str:
    """The restore state machine and its step functions in the (moto) account; returns the state machine ARN.
    `rehearsals`: the databases with migration rehearsals (mode rehearse), each with its task and secret
    (`dbops-local/<database>/rehearsal`); a migration image's folder is set in `local_images`."""
    build = _restore_build(retry_interval_s, retry_attempts, rehearsals or {})
    definition, handlers, ecs_resources = _synthesize(build, HANDLERS)
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


def deploy_template_restore_workflow(
    template: Mapping[str, Any], *, name: str, function_prefix: str, environment: Mapping[str, str], region: str
) -> str:
    """A synthesized stack's own restore state machine (the DR stack's template: its definition and its restore
    step functions) in the (moto) account, each function `<function_prefix>-<step>` with `environment` (its bucket
    and databases) over this process's; returns the state machine's ARN."""
    resources = template["Resources"]
    [machine] = [r for r in resources.values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    handlers = {
        lid: r["Properties"]["Handler"]
        for lid, r in resources.items()
        if r["Type"] == "AWS::Lambda::Function" and r["Properties"].get("Handler", "").startswith(HANDLERS)
    }
    return _deploy(
        machine["Properties"]["DefinitionString"],
        handlers,
        name,
        region,
        names=lambda handler: f"{function_prefix}-{handler.rsplit('.', 1)[1]}",
        environment=environment,
    )


def deploy_dr_restore_workflow(*, environment: Mapping[str, str], region: str, name: str = "dbops-restore") -> str:
    """The DR stack's restore state machine as infra/disaster_recovery.py makes it (the RestoreWorkflow construct,
    every stage in Lambda: no Fargate task) in `region` of the (moto) account, its step functions `dbops-dr-<step>`
    with `environment` (the replica bucket, the DR databases) over this process's; returns its ARN."""
    from infra.restore_workflow import STEP_HANDLERS

    def build(stack: Any) -> None:
        from infra.restore_workflow import RestoreWorkflow

        functions = {step: _function(stack, f"{step}Fn", handler) for step, handler in STEP_HANDLERS.items()}
        RestoreWorkflow(stack, "Restore", functions=functions, retry_interval_s=1, retry_attempts=1)

    definition, handlers, _ = _synthesize(build, HANDLERS)
    return _deploy(
        definition,
        handlers,
        name,
        region,
        names=lambda handler: f"dbops-dr-{handler.rsplit('.', 1)[1]}",
        environment=environment,
    )
