"""The restore state machine in the stack: one function per step, Retry on transient errors, Catch to the
rollback path, a timeout, the Fargate stage for large archives, the weekly drill and the alarms."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk import App, Environment, Stack
from aws_cdk import aws_ecs as ecs
from aws_cdk.assertions import Template

from dbops.contract import ENV_TASK_CPU_UNITS, RETRIED_STEP_ERRORS
from infra.restore_workflow import STEP_HANDLERS, StageTask
from tests.infra.conftest import Synth, all_states

BEFORE_SWAP = ("Validate", "SafetyBackupAndStage", "StopApplication", "Check", "Swap")
IN_PARALLEL = ("SafetyBackup", "Stage", "StageOnFargate")  # caught by the Parallel they run in


@pytest.fixture(scope="module")
def definition(synthesized: Synth) -> dict[str, Any]:
    machine = synthesized.json["Resources"][synthesized.logical_id(synthesized.stack.restore_workflow.state_machine)]
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    return json.loads("".join(p if isinstance(p, str) else "TOKEN" for p in parts))  # type: ignore[no-any-return]


def test_every_step_is_a_function_of_handlers_restore(synthesized: Synth) -> None:
    functions = synthesized.stack.restore_functions
    assert {f"handlers.restore.{name}" for name in functions} == set(STEP_HANDLERS.values())
    props = synthesized.json["Resources"][synthesized.logical_id(functions["stage"])]["Properties"]
    assert props["EphemeralStorage"] == {"Size": 10240}
    assert props["Timeout"] == 900
    assert props["Environment"]["Variables"]["DBOPS_WORK_DIR"] == "/tmp"
    assert "DBOPS_TOPIC_ARN" in props["Environment"]["Variables"]


def test_every_step_before_the_swap_is_caught_into_rollback_then_notify_then_fail(definition: dict[str, Any]) -> None:
    states = definition["States"]
    for name in BEFORE_SWAP:
        assert [c["Next"] for c in states[name]["Catch"]] == ["Rollback"], name
        assert states[name]["Catch"][0]["ErrorEquals"] == ["States.ALL"]
    assert states["Rollback"]["Next"] == "NotifyFailure"
    assert states["Rollback"]["Catch"][0]["Next"] == "NotifyFailure"
    assert states["NotifyFailure"]["Next"] == "RestoreFailed"
    assert states["RestoreFailed"] == {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.outcome"}
    for name in ("StartApplication", "Finish"):  # after the swap the data is restored: report, do not roll back
        assert states[name]["Catch"][0]["Next"] == "NotifyFailure"
    branches = [b["States"] for b in states["SafetyBackupAndStage"]["Branches"]]
    assert set(IN_PARALLEL) <= {name for branch in branches for name in all_states(branch)}
    assert all("Catch" not in state for branch in branches for state in all_states(branch).values())


def test_the_safety_backup_and_the_stage_run_side_by_side_and_the_application_stops_for_the_swap_alone(
    definition: dict[str, Any],
) -> None:
    """Neither touches the target's rows (Stage fills the work database), so the restore waits for the longer of the
    two, not their sum; the execution goes on with the SafetyBackup branch's state (its safety_backup_id; Stage
    returns its input). The application is stopped once the copy is checked, right before the swap, and only where
    the database has an application hook (no Lambda invoked for nothing)."""
    states = definition["States"]
    prepare = states["SafetyBackupAndStage"]
    assert prepare["Type"] == "Parallel" and prepare["OutputPath"] == "$[0]" and prepare["Next"] == "Check"
    assert prepare["Branches"][0]["StartAt"] == "SafetyBackup"
    assert prepare["Branches"][1]["StartAt"] == "StageWhere"
    assert states["WhatNext"]["Default"] == "SafetyBackupAndStage"
    drill, hook = states["DrillOrSwap"]["Choices"]
    assert drill["Next"] == "Finish" and hook == {
        "Variable": "$.app_hook",
        "BooleanEquals": True,
        "Next": "StopApplication",
    }
    assert states["DrillOrSwap"]["Default"] == "Swap" and states["StopApplication"]["Next"] == "Swap"
    [stopped] = states["ApplicationStopped"]["Choices"]  # started again only where it was stopped
    assert stopped == {"Variable": "$.app_stopped", "BooleanEquals": True, "Next": "StartApplication"}
    assert states["Swap"]["Next"] == "ApplicationStopped" and states["ApplicationStopped"]["Default"] == "Finish"


def test_a_refused_request_ends_in_a_succeed_state_before_anything_starts(definition: dict[str, Any]) -> None:
    """Validate (and DumpPointInTime, which validates the moment's dump) return {"refusal": ...} for a request
    refused by validation: the next Choice ends it in the Succeed state RestoreRefused, its output the refusal
    ({"status": "refused", "reason", ...}), neither Rollback nor NotifyFailure nor a Fail state on the way."""
    states = definition["States"]
    assert states["RestoreRefused"] == {"Type": "Succeed", "OutputPath": "$.refusal"}
    assert states["Validate"]["Next"] == "FromWhere" and states["DumpPointInTime"]["Next"] == "WhatNext"
    for choice in ("FromWhere", "WhatNext"):
        first = states[choice]["Choices"][0]
        assert first == {"Variable": "$.refusal", "IsPresent": True, "Next": "RestoreRefused"}, choice
    refused = states["FillWhere"]["Choices"][0]  # a rehearsal refused in PrepareRehearsal
    assert refused == {"Variable": "$.refusal", "IsPresent": True, "Next": "RehearsalRefused"}
    assert states["RehearsalRefused"] == {"Type": "Succeed", "OutputPath": "$.refusal"}


def test_transient_errors_are_retried_and_the_whole_restore_is_bounded_by_the_rto(definition: dict[str, Any]) -> None:
    for name in ("Validate", "SafetyBackup", "Stage", "Swap", "Rollback"):
        retries = all_states(definition["States"])[name]["Retry"]
        assert any(r["ErrorEquals"] == list(RETRIED_STEP_ERRORS) and r["MaxAttempts"] == 3 for r in retries), name
    assert definition["TimeoutSeconds"] == 4 * 3600


def test_a_swap_refused_for_now_or_for_its_pause_is_not_retried_on_top_of_its_own_lock_wait_budget(
    definition: dict[str, Any], synthesized: Synth
) -> None:
    """The swap retries its own lock waits within restore.lock_wait_budget; the state machine retrying RestoreBusy
    would stall the application's writers again, budget after budget. Both refusals go to Rollback."""
    swap = definition["States"]["Swap"]
    retried = {error for retry in swap["Retry"] for error in retry["ErrorEquals"]}
    assert retried.isdisjoint({"RestoreBusy", "PauseTooLong", "States.ALL", "DbopsError"}), retried
    assert [c["Next"] for c in swap["Catch"]] == ["Rollback"]
    variables = synthesized.json["Resources"][synthesized.logical_id(synthesized.stack.restore_functions["swap"])][
        "Properties"
    ]["Environment"]["Variables"]
    assert {k: v for k, v in variables.items() if k.startswith("DBOPS_RESTORE_")} == {
        "DBOPS_RESTORE_LOCK_TIMEOUT_S": "0.15",
        "DBOPS_RESTORE_LOCK_WAIT_BUDGET_S": "30",
        "DBOPS_RESTORE_MAX_PAUSE_S": "2",
    }


def test_large_archives_stage_on_fargate_with_the_same_code(definition: dict[str, Any], synthesized: Synth) -> None:
    states = all_states(definition["States"])
    assert states["StageWhere"]["Choices"][0] == {
        "Variable": "$.use_fargate",
        "BooleanEquals": True,
        "Next": "StageOnFargate",
    }
    assert states["StageWhere"]["Default"] == "Stage"
    assert states["StageOnFargate"]["Resource"].endswith(":states:::ecs:runTask.sync")
    (task,) = [  # the other one is the rehearsal's
        t
        for t in synthesized.resources("AWS::ECS::TaskDefinition").values()
        if len(t["Properties"]["ContainerDefinitions"]) == 1
    ]
    (container,) = task["Properties"]["ContainerDefinitions"]
    assert container["Command"] == ["python", "-m", "handlers.restore_task"]
    image = json.dumps(container["Image"])  # pulled through its ECR repository, so the task may pull it
    assert "dkr.ecr." in image and "/dbops-restore:1.0" in image
    execution_role = task["Properties"]["ExecutionRoleArn"]["Fn::GetAtt"][0]
    (execution_policy,) = [
        p
        for p in synthesized.resources("AWS::IAM::Policy").values()
        if {"Ref": execution_role} in p["Properties"]["Roles"]
    ]
    pulls = [
        s for s in execution_policy["Properties"]["PolicyDocument"]["Statement"] if "ecr:BatchGetImage" in s["Action"]
    ]
    assert pulls[0]["Resource"] == "arn:aws:ecr:eu-west-1:123456789012:repository/dbops-restore"


def test_drill_schedules_start_the_state_machine_in_drill_mode(synthesized: Synth) -> None:
    rules = synthesized.stack.schedules.rules
    machine_id = synthesized.logical_id(synthesized.stack.restore_workflow.state_machine)
    drills = [
        synthesized.json["Resources"][synthesized.logical_id(rules[f"RestoreDrill{i}"])]["Properties"] for i in (0, 1)
    ]
    assert [d["ScheduleExpression"] for d in drills] == ["cron(0 6 ? * SUN *)"] * 2
    inputs = [json.loads(d["Targets"][0]["Input"]) for d in drills]
    assert [(i["database"], i["mode"]) for i in inputs] == [("sprint_reports_v2", "drill"), ("billing", "drill")]
    assert all(d["Targets"][0]["Arn"] == {"Ref": machine_id} for d in drills)


def test_restore_step_role_reaches_only_its_prefixes(synthesized: Synth) -> None:
    function = synthesized.stack.restore_functions["validate"]
    role_id = synthesized.logical_id(function.role)
    (policy,) = [
        p for p in synthesized.resources("AWS::IAM::Policy").values() if {"Ref": role_id} in p["Properties"]["Roles"]
    ]
    by_sid = {s.get("Sid"): s for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    bucket_id = synthesized.logical_id(synthesized.stack.storage.bucket)
    objects = [
        {"Fn::Join": ["", [{"Fn::GetAtt": [bucket_id, "Arn"]}, f"/{p}*"]]}
        for p in ("backups/", "restores/", "drills/", "restore-progress/")
    ]
    assert by_sid["ReadBackups"]["Resource"] == objects
    # under backups/ only its safety backup, a point-in-time dump and the verification records (never another
    # backup's archive or manifest); its restore and drill records; Stage's progress
    writes = (
        "backups/prerestore/",
        "backups/pointintime/",
        "backups/*/verification.json",
        "restores/",
        "drills/",
        "restore-progress/",
    )
    assert by_sid["WriteBackups"]["Resource"] == [
        {"Fn::Join": ["", [{"Fn::GetAtt": [bucket_id, "Arn"]}, f"/{p}" + ("" if p.endswith(".json") else "*")]]}
        for p in writes
    ]
    assert by_sid["PublishAlarms"]["Action"] == "sns:Publish"


def test_expired_copies_are_dropped_daily_by_a_function_with_the_restore_steps_access(synthesized: Synth) -> None:
    function = synthesized.stack.expired_copies_function
    assert function is not None
    function_id = synthesized.logical_id(function)
    assert synthesized.json["Resources"][function_id]["Properties"]["Handler"] == "handlers.restore.drop_expired_copies"
    rule = synthesized.json["Resources"][synthesized.logical_id(synthesized.stack.schedules.rules["ExpiredCopies"])]
    assert rule["Properties"]["ScheduleExpression"] == "cron(0 7 * * ? *)"
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}
    assert "Input" not in target  # the plain scheduled event: every configured database
    role_id = synthesized.logical_id(function.role)
    (policy,) = [
        p for p in synthesized.resources("AWS::IAM::Policy").values() if {"Ref": role_id} in p["Properties"]["Roles"]
    ]
    readable = {s.get("Sid"): s for s in policy["Properties"]["PolicyDocument"]["Statement"]}["ReadBackups"]["Resource"]
    assert {
        "Fn::Join": [
            "",
            [{"Fn::GetAtt": [synthesized.logical_id(synthesized.stack.storage.bucket), "Arn"]}, "/restores/*"],
        ]
    } in readable
    assert "FunctionErrors-Restore-drop_expired_copies" in synthesized.stack.monitoring.alarms


def test_state_machine_and_step_functions_are_alarmed(synthesized: Synth) -> None:
    alarms = synthesized.stack.monitoring.alarms
    for what in ("Failed", "TimedOut", "Aborted"):
        props = synthesized.json["Resources"][synthesized.logical_id(alarms[f"Executions{what}-Restore"])]["Properties"]
        assert (props["Namespace"], props["MetricName"], props["Threshold"]) == ("AWS/States", f"Executions{what}", 1)
    assert "FunctionErrors-Restore-validate" in alarms
    assert "RestoreStateMachineArn" in synthesized.json["Outputs"]


def test_application_hook_steps_may_write_only_the_configured_parameter(synthesized: Synth) -> None:
    for step, allowed in (
        ("stop_application", True),
        ("start_application", True),
        ("rollback", True),
        ("stage", False),
        ("validate", False),
    ):
        role_id = synthesized.logical_id(synthesized.stack.restore_functions[step].role)
        statements = [
            s
            for p in synthesized.resources("AWS::IAM::Policy").values()
            if {"Ref": role_id} in p["Properties"]["Roles"]
            for s in p["Properties"]["PolicyDocument"]["Statement"]
        ]
        hook = [s for s in statements if s.get("Sid") == "ApplicationMaintenanceMode"]
        assert bool(hook) == allowed, step
        if allowed:
            assert hook[0]["Action"] == "ssm:PutParameter"
            parts = hook[0]["Resource"]["Fn::Join"][1]
            assert parts[2] == ":ssm:" and parts[-1] == ":parameter/sprint-reports/maintenance-mode"


def test_functions_get_the_hook_and_custom_checks_in_their_database_settings(synthesized: Synth) -> None:
    props = synthesized.json["Resources"][synthesized.logical_id(synthesized.stack.restore_functions["check"])]
    databases = json.loads(props["Properties"]["Environment"]["Variables"]["DBOPS_DATABASES"])
    assert databases[0]["app_hook"] == {"type": "ssm", "parameter": "/sprint-reports/maintenance-mode"}
    assert databases[0]["restore_checks"] == ["SELECT count(*) > 0 FROM users"]


# Restores as of a moment (dbops.aws.rds): the temporary instance's path, access and sweep.


def test_a_restore_as_of_a_moment_restores_waits_dumps_then_takes_the_ordinary_path(definition: dict[str, Any]) -> None:
    states = definition["States"]
    assert states["Request"]["Parameters"] == {"request.$": "$", "execution.$": "$$.Execution.Id"}
    assert states["Validate"]["Next"] == "FromWhere"
    refused, as_of = states["FromWhere"]["Choices"]
    assert refused["Next"] == "RestoreRefused"
    assert as_of["Next"] == "RestoreToPointInTime"
    assert {"Variable": "$.temporary_instance", "IsNull": False} in as_of["And"]
    assert {"Variable": "$.request.dry_run", "BooleanEquals": False} in as_of["And"]
    assert states["FromWhere"]["Default"] == "WhatNext"
    assert states["RestoreToPointInTime"]["Next"] == "InstanceNotReady"
    assert states["InstanceNotReady"] == {"Type": "Wait", "Seconds": 30, "Next": "WaitForInstance"}
    assert states["WaitForInstance"]["Next"] == "InstanceReady"
    ready = states["InstanceReady"]
    assert ready["Choices"] == [{"Variable": "$.instance_endpoint", "IsNull": False, "Next": "DumpWhere"}]
    assert ready["Default"] == "InstanceNotReady"
    # a database whose backups run on Fargate has its copy dumped there too; DumpPointInTime then finds the dump
    assert states["DumpWhere"]["Choices"] == [
        {"Variable": "$.dump_on_fargate", "BooleanEquals": True, "Next": "DumpOnFargate"}
    ]
    assert states["DumpWhere"]["Default"] == "DumpPointInTime"
    task = states["DumpOnFargate"]
    assert task["Resource"].endswith(":states:::ecs:runTask.sync") and task["Next"] == "DumpPointInTime"
    [override] = task["Parameters"]["Overrides"]["ContainerOverrides"]
    assert {"Name": "DBOPS_RESTORE_STEP", "Value": "dump_point_in_time"} in override["Environment"]
    assert states["DumpPointInTime"]["Next"] == "WhatNext"
    for name in ("RestoreToPointInTime", "WaitForInstance", "DumpOnFargate", "DumpPointInTime"):
        assert [c["Next"] for c in states[name]["Catch"]] == ["Rollback"], name  # Rollback deletes the copy


def _role_statements(synthesized: Synth, function: Any) -> list[dict[str, Any]]:
    role_id = synthesized.logical_id(function.role)
    [policy] = [
        p for p in synthesized.resources("AWS::IAM::Policy").values() if {"Ref": role_id} in p["Properties"]["Roles"]
    ]
    return policy["Properties"]["PolicyDocument"]["Statement"]  # type: ignore[no-any-return]


def test_only_the_point_in_time_steps_touch_rds_and_only_dbops_tagged_instances_are_deleted(synthesized: Synth) -> None:
    functions = synthesized.stack.restore_functions
    rds_actions = {
        step: sorted(
            a
            for s in _role_statements(synthesized, fn)
            for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
            if a.startswith("rds:")
        )
        for step, fn in functions.items()
    }
    # sprint_reports_v2 runs on an RDS instance, billing on an Aurora cluster (tests/infra/conftest.py)
    describe = ["rds:DescribeDBClusters", "rds:DescribeDBInstances"]
    delete = ["rds:DeleteDBCluster", "rds:DeleteDBInstance"]
    restore = [
        "rds:AddTagsToResource",
        "rds:CreateDBInstance",
        "rds:RestoreDBClusterToPointInTime",
        "rds:RestoreDBInstanceToPointInTime",
    ]
    assert {step: actions for step, actions in rds_actions.items() if actions} == {
        "validate": describe,
        "restore_to_point_in_time": sorted(describe + restore),
        "wait_for_instance": describe,
        "dump_point_in_time": sorted(delete + describe),
        "rollback": sorted(delete + describe),
        "finish": sorted(delete + describe),
    }
    for step in ("dump_point_in_time", "rollback", "finish"):
        [deleting] = [
            s for s in _role_statements(synthesized, functions[step]) if "rds:DeleteDBInstance" in s["Action"]
        ]
        assert deleting["Condition"] == {"StringEquals": {"aws:ResourceTag/dbops:purpose": "point-in-time-restore"}}
        resources = json.dumps(deleting["Resource"])
        assert resources.count("dbops-pit-*") == 2 and ":db:dbops-pit-*" in resources
        assert ":cluster:dbops-pit-*" in resources
    [restoring] = [
        s
        for s in _role_statements(synthesized, functions["restore_to_point_in_time"])
        if "rds:RestoreDBInstanceToPointInTime" in s["Action"]
    ]
    sources = json.dumps(restoring["Resource"])
    assert "db:sprint-reports-prod" in sources and "cluster:billing-aurora" in sources  # the configured sources


def test_an_execution_that_ended_abnormally_and_a_daily_schedule_start_the_sweep(synthesized: Synth) -> None:
    sweep = synthesized.stack.temporary_instance_sweep
    assert sweep is not None
    props = synthesized.json["Resources"][synthesized.logical_id(sweep)]["Properties"]
    assert props["Handler"] == "handlers.restore.sweep_temporary_instances"
    machine = {"Ref": synthesized.logical_id(synthesized.stack.restore_workflow.state_machine)}
    rules = [
        r["Properties"]
        for r in synthesized.resources("AWS::Events::Rule").values()
        if "EventPattern" in r["Properties"] and r["Properties"]["EventPattern"].get("source") == ["aws.states"]
    ]
    [ended] = rules
    assert ended["EventPattern"]["detail"] == {
        "stateMachineArn": [machine],
        "status": ["ABORTED", "TIMED_OUT", "FAILED"],
    }
    assert ended["Targets"][0]["Arn"] == {"Fn::GetAtt": [synthesized.logical_id(sweep), "Arn"]}
    daily = synthesized.stack.schedules.rules["TemporaryInstances"]
    target = synthesized.json["Resources"][synthesized.logical_id(daily)]["Properties"]["Targets"][0]
    assert target["Arn"] == {"Fn::GetAtt": [synthesized.logical_id(sweep), "Arn"]}
    actions = {
        a
        for s in _role_statements(synthesized, sweep)
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert {"rds:DescribeDBInstances", "rds:DeleteDBInstance", "states:DescribeExecution"} <= actions
    assert "secretsmanager:GetSecretValue" not in actions  # it never connects to a database


def _task_cpu(task: dict[str, Any]) -> tuple[str, str]:
    """The task definition's CPU units, and what its container is told they are."""
    (container,) = task["Properties"]["ContainerDefinitions"]
    variables = {v["Name"]: v["Value"] for v in container["Environment"]}
    return task["Properties"]["Cpu"], variables[ENV_TASK_CPU_UNITS]


def test_the_fargate_task_tells_its_container_its_cpu_units(synthesized: Synth) -> None:
    """A backup in the task sizes its COPY streams by the task's vCPUs (the host's CPU count is not the task's)."""
    (task,) = [
        t
        for t in synthesized.resources("AWS::ECS::TaskDefinition").values()
        if len(t["Properties"]["ContainerDefinitions"]) == 1
    ]
    assert _task_cpu(task) == ("2048", "2048")
    stack = Stack(App(), "Sized", env=Environment(account="123456789012", region="eu-west-1"))
    StageTask(stack, "Task", image=ecs.ContainerImage.from_registry("dbops:1"), environment={"A": "b"}, cpu=4096)
    (sized,) = Template.from_stack(stack).find_resources("AWS::ECS::TaskDefinition").values()
    assert _task_cpu(sized) == ("4096", "4096")
