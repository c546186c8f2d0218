"""The spot left for the restore workflow (issue 3): step functions, drill schedule and alarms wired to it.

infra/restore_workflow.py is the lead's; this test stands in a minimal RestoreWorkflow with the agreed interface
(functions by step name, the alarm topic, `.state_machine`) to prove the stack's side of the wiring.
"""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from tests.infra.conftest import Synth, settings_dict, synth

STEPS = ("validate", "safety_backup")


def _stand_in_module() -> types.ModuleType:
    from aws_cdk import Acknowledgment, Stack, Validations
    from aws_cdk import aws_lambda as lambda_
    from aws_cdk import aws_logs as logs
    from aws_cdk import aws_sns as sns
    from aws_cdk import aws_stepfunctions as sfn
    from aws_cdk import aws_stepfunctions_tasks as tasks
    from constructs import Construct

    class RestoreWorkflow(Construct):
        def __init__(
            self, scope: Construct, construct_id: str, *, functions: Mapping[str, lambda_.IFunction], topic: sns.ITopic
        ) -> None:
            super().__init__(scope, construct_id)
            steps = [tasks.LambdaInvoke(self, name, lambda_function=fn) for name, fn in functions.items()]
            chain = sfn.Chain.start(steps[0])
            for step in steps[1:]:
                chain = chain.next(step)
            self.state_machine = sfn.StateMachine(
                self,
                "StateMachine",
                definition_body=sfn.DefinitionBody.from_chainable(chain),
                tracing_enabled=True,
                logs=sfn.LogOptions(destination=logs.LogGroup(self, "Logs"), level=sfn.LogLevel.ALL),
            )
            scope.monitoring.grant_publish(self.state_machine)  # type: ignore[attr-defined]
            stack = Stack.of(self)
            rules = ["AwsSolutions-IAM5[Resource::*]"]
            for fn in functions.values():
                fn_id = stack.resolve(stack.get_logical_id(fn.node.default_child))  # type: ignore[arg-type]
                rules.append(f"AwsSolutions-IAM5[Resource::<{fn_id}.Arn>:*]")
            for rule in rules:
                Validations.of(self.state_machine).acknowledge(
                    Acknowledgment(id=rule, reason="stand-in workflow for the stack's wiring test, never deployed")
                )

    module = types.ModuleType("infra.restore_workflow")
    module.RestoreWorkflow = RestoreWorkflow  # type: ignore[attr-defined]
    return module


@pytest.fixture(scope="module")
def with_restore(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synth]:
    saved = sys.modules.get("infra.restore_workflow")
    sys.modules["infra.restore_workflow"] = _stand_in_module()
    try:
        yield synth(tmp_path_factory.mktemp("restore"), settings_dict(), restore_steps=STEPS)
    finally:
        if saved is None:
            sys.modules.pop("infra.restore_workflow", None)
        else:
            sys.modules["infra.restore_workflow"] = saved


def test_without_restore_steps_the_stack_has_no_restore_parts(synthesized: Synth) -> None:
    assert synthesized.stack.restore_functions == {}
    assert synthesized.resources("AWS::StepFunctions::StateMachine") == {}


def test_restore_steps_become_functions_of_handlers_restore(with_restore: Synth) -> None:
    functions = with_restore.stack.restore_functions
    assert sorted(functions) == sorted(STEPS)
    props = with_restore.json["Resources"][with_restore.logical_id(functions["safety_backup"])]["Properties"]
    assert props["Handler"] == "handlers.restore.safety_backup"
    assert props["EphemeralStorage"] == {"Size": 10240}
    assert props["Timeout"] == 900


def test_restore_step_role_reads_and_writes_backups_only(with_restore: Synth) -> None:
    function = with_restore.stack.restore_functions["validate"]
    role_id = with_restore.logical_id(function.role)
    (policy,) = [
        p for p in with_restore.resources("AWS::IAM::Policy").values() if {"Ref": role_id} in p["Properties"]["Roles"]
    ]
    by_sid = {s.get("Sid"): s for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    bucket_id = with_restore.logical_id(with_restore.stack.storage.bucket)
    objects = {"Fn::Join": ["", [{"Fn::GetAtt": [bucket_id, "Arn"]}, "/backups/*"]]}
    assert by_sid["ReadBackups"]["Resource"] == objects
    assert by_sid["WriteBackups"]["Resource"] == objects
    assert by_sid["BackupKey"]["Action"] == ["kms:GenerateDataKey", "kms:Decrypt"]


def test_drill_schedules_start_the_restore_state_machine(with_restore: Synth) -> None:
    rules = with_restore.stack.schedules.rules
    machine_id = with_restore.logical_id(with_restore.stack.restore_workflow.state_machine)
    drills = [
        with_restore.json["Resources"][with_restore.logical_id(rules[f"RestoreDrill{i}"])]["Properties"] for i in (0, 1)
    ]
    assert [d["ScheduleExpression"] for d in drills] == ["cron(0 6 ? * SUN *)"] * 2
    assert [json.loads(d["Targets"][0]["Input"])["database"] for d in drills] == ["sprint_reports_v2", "billing"]
    assert all(d["Targets"][0]["Arn"] == {"Ref": machine_id} for d in drills)


def test_state_machine_and_step_functions_are_alarmed(with_restore: Synth) -> None:
    alarms = with_restore.stack.monitoring.alarms
    for what in ("Failed", "TimedOut", "Aborted"):
        props: dict[str, Any] = with_restore.json["Resources"][
            with_restore.logical_id(alarms[f"Executions{what}-Restore"])
        ]["Properties"]
        assert props["Namespace"] == "AWS/States"
        assert props["MetricName"] == f"Executions{what}"
        assert props["Threshold"] == 1
    assert "FunctionErrors-Restore-validate" in alarms
    (dashboard,) = with_restore.resources("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    assert with_restore.logical_id(alarms["ExecutionsFailed-Restore"]) in body  # in the alarm overview


def test_the_stack_with_a_workflow_still_passes_the_checks(with_restore: Synth) -> None:
    from tests.infra.conftest import validation_report

    report = validation_report(with_restore.outdir)
    assert [v for p in report["pluginReports"] for v in p.get("violations", [])] == []
    outputs = with_restore.json["Outputs"]
    assert "RestoreStateMachineArn" in outputs
