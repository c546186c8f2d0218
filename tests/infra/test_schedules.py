"""EventBridge schedules: the guide's rhythm by default, each overridable or switched off in cdk.json."""

from __future__ import annotations

import json
from typing import Any

from tests.infra.conftest import Synth


def _rules(synthesized: Synth) -> dict[str, dict[str, Any]]:
    rules = synthesized.stack.schedules.rules
    return {
        name: synthesized.json["Resources"][synthesized.logical_id(rule)]["Properties"] for name, rule in rules.items()
    }


def _target(rule: dict[str, Any]) -> dict[str, Any]:
    (target,) = rule["Targets"]
    return target  # type: ignore[no-any-return]


def test_schedule_expressions_default_and_overridden(synthesized: Synth) -> None:
    expressions = {name: rule["ScheduleExpression"] for name, rule in _rules(synthesized).items()}
    assert expressions == {
        "Backup": "cron(0 2 * * ? *)",  # nightly
        "Health": "rate(5 minutes)",
        "MaintenanceAnalyze": "cron(0 4 ? * SUN *)",  # weekly
        "MaintenanceVacuum": "cron(15 1 * * ? *)",  # overridden in the test settings
        "MaintenanceReindex": "cron(0 5 1 * ? *)",  # monthly
        "MaintenanceCleanup": "cron(0 4 ? * SAT *)",  # weekly
        # MaintenanceArchive: "off" in the test settings
        "RestoreDrill0": "cron(0 6 ? * SUN *)",  # weekly, one per database
        "RestoreDrill1": "cron(0 6 ? * SUN *)",
        "ExpiredCopies": "cron(0 7 * * ? *)",  # daily
        "TemporaryInstances": "cron(15 7 * * ? *)",  # daily
    }
    assert all(rule["State"] == "ENABLED" for rule in _rules(synthesized).values())


def test_each_schedule_targets_its_function_with_its_input(synthesized: Synth) -> None:
    functions = synthesized.stack.functions
    rules = _rules(synthesized)

    def arn(function: Any) -> dict[str, Any]:
        return {"Fn::GetAtt": [synthesized.logical_id(function), "Arn"]}

    machine = {"Ref": synthesized.logical_id(synthesized.stack.backup_workflow.state_machine)}
    assert _target(rules["Backup"])["Arn"] == machine  # the backup state machine: a Map over the databases
    assert json.loads(_target(rules["Backup"])["Input"]) == {"kind": "nightly"}
    assert _target(rules["Health"])["Arn"] == arn(functions.health)
    assert "Input" not in _target(rules["Health"])  # the plain scheduled event
    for task in ("analyze", "vacuum", "reindex", "cleanup"):
        target = _target(rules[f"Maintenance{task.capitalize()}"])
        assert target["Arn"] == arn(functions.maintenance)
        assert json.loads(target["Input"]) == {"task": task}


def test_events_may_invoke_each_scheduled_function(synthesized: Synth) -> None:
    permissions = synthesized.resources("AWS::Lambda::Permission").values()
    invokers = {
        (p["Properties"]["FunctionName"]["Fn::GetAtt"][0], p["Properties"]["SourceArn"]["Fn::GetAtt"][0])
        for p in permissions
        if p["Properties"]["Principal"] == "events.amazonaws.com"
    }
    functions = synthesized.stack.functions
    for name, rule in synthesized.stack.schedules.rules.items():
        if name.startswith("RestoreDrill") or name == "Backup":
            continue  # target a state machine (test_restore_workflow_construct, test_backup_workflow_construct)
        if name.startswith("Maintenance"):
            target = functions.maintenance
        elif name == "ExpiredCopies":
            target = synthesized.stack.expired_copies_function
        elif name == "TemporaryInstances":
            target = synthesized.stack.temporary_instance_sweep
        else:
            target = functions.by_name[name]
        assert (synthesized.logical_id(target), synthesized.logical_id(rule)) in invokers


def test_restore_drill_starts_the_state_machine_weekly_per_database() -> None:
    from aws_cdk import App, Stack
    from aws_cdk import aws_lambda as lambda_
    from aws_cdk import aws_stepfunctions as sfn
    from aws_cdk.assertions import Template

    from infra.schedule_settings import Schedules as ScheduleSettings
    from infra.schedules import Schedules

    stack = Stack(App(), "DrillTest")
    fn = lambda_.Function(
        stack, "Fn", runtime=lambda_.Runtime.PYTHON_3_12, handler="x.h", code=lambda_.Code.from_inline("x=1")
    )
    machine = sfn.StateMachine(
        stack, "Restore", definition_body=sfn.DefinitionBody.from_chainable(sfn.Pass(stack, "P"))
    )
    schedules = Schedules(stack, "Schedules", schedules=ScheduleSettings(), backup=machine, health=fn, maintenance=fn)
    schedules.add_restore_drill(machine, ["sprint_reports_v2", "billing"])
    template = Template.from_stack(stack).to_json()
    drills = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Events::Rule" and "restore drill" in r["Properties"]["Description"]
    ]
    assert [d["ScheduleExpression"] for d in drills] == ["cron(0 6 ? * SUN *)"] * 2
    inputs = [json.loads(d["Targets"][0]["Input"]) for d in drills]
    assert inputs == [
        {"backup": "latest", "database": "sprint_reports_v2", "mode": "drill"},
        {"backup": "latest", "database": "billing", "mode": "drill"},
    ]
    machine_id = stack.resolve(stack.get_logical_id(machine.node.default_child))
    assert all(d["Targets"][0]["Arn"] == {"Ref": machine_id} for d in drills)
    assert all("RoleArn" in d["Targets"][0] for d in drills)  # EventBridge assumes a role to start executions
