"""The backup state machine in the stack: a Map over the configured databases with MaxConcurrency from cdk.json,
one Backup invoke per database with Retry on Lambda's transient errors and a Catch that records the failure,
started by the nightly schedule, allowed to invoke the Backup function only, logged, traced and alarmed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dbops import contract
from infra.backup_workflow import BACKUP_TASK_COMMAND, ECS_TRANSIENT_ERRORS, LAMBDA_TRANSIENT_ERRORS, REQUEST_KINDS
from infra.settings import SettingsError, load_settings
from tests.infra.conftest import Synth, make_base_dir, settings_dict, synth


def _machine(synthesized: Synth) -> dict[str, Any]:
    machine = synthesized.stack.backup_workflow.state_machine
    return synthesized.json["Resources"][synthesized.logical_id(machine)]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def definition(synthesized: Synth) -> dict[str, Any]:
    parts = _machine(synthesized)["Properties"]["DefinitionString"]["Fn::Join"][1]
    return json.loads("".join(p if isinstance(p, str) else "TOKEN" for p in parts))  # type: ignore[no-any-return]


def _policy_statements(synthesized: Synth, role: Any) -> list[dict[str, Any]]:
    role_id = synthesized.logical_id(role)
    return [
        s
        for p in synthesized.resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_a_map_over_the_databases_with_max_concurrency_from_cdk_json(definition: dict[str, Any]) -> None:
    states = definition["States"]
    each = states["BackupEach"]
    assert each["Type"] == "Map"
    assert each["MaxConcurrency"] == 3  # "backup": {"max_concurrency": 3} in the test settings
    assert each["ItemsPath"] == "$.databases"
    assert each["ItemSelector"] == {"kind.$": "$.kind", "database.$": "$$.Map.Item.Value"}
    # no databases in the request: every configured one, as cdk.json lists them
    assert states["EveryDatabase"]["Parameters"]["databases"] == ["sprint_reports_v2", "billing"]
    assert definition["TimeoutSeconds"] == 6 * 3600


def test_each_database_is_its_own_invoke_with_retry_on_lambda_errors_and_a_catch(
    definition: dict[str, Any], synthesized: Synth
) -> None:
    inner = definition["States"]["BackupEach"]["ItemProcessor"]["States"]
    backup = inner["Backup"]
    assert backup["Parameters"] == {"kind.$": "$.kind", "database.$": "$.database"}
    assert backup["Resource"] == "TOKEN"  # the Backup function's ARN (below)
    (retry,) = backup["Retry"]
    assert retry["ErrorEquals"] == LAMBDA_TRANSIENT_ERRORS  # never the backup's own failure, never States.ALL
    assert (retry["MaxAttempts"], retry["BackoffRate"]) == (6, 2)
    (catch,) = backup["Catch"]
    assert catch == {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "RecordFailure"}
    assert inner["RecordFailure"]["Parameters"]["ok"] is False
    assert inner["RecordFailure"].get("End") is True  # the other databases go on
    parts = _machine(synthesized)["Properties"]["DefinitionString"]["Fn::Join"][1]
    function_id = synthesized.logical_id(synthesized.stack.functions.backup)
    assert {"Fn::GetAtt": [function_id, "Arn"]} in parts


def test_a_failed_database_fails_the_execution_naming_it(definition: dict[str, Any]) -> None:
    states = definition["States"]
    assert states["BackupEach"]["Next"] == "Summarize"
    assert states["AnyFailed"]["Choices"] == [
        {"Variable": "$.any_failed", "BooleanEquals": True, "Next": "ListFailures"}
    ]
    assert states["AnyFailed"]["Default"] == "BackedUp"
    assert states["ListFailures"]["Parameters"]["failed.$"] == "$.results[?(@.ok == false)].summary"
    assert states["BackupsFailed"]["Type"] == "Fail"
    assert "States.JsonToString($.failed)" in states["BackupsFailed"]["CausePath"]


def test_a_request_is_checked_before_any_backup(definition: dict[str, Any]) -> None:
    states = definition["States"]
    assert definition["StartAt"] == "Request"
    kinds = [c["StringEquals"] for c in states["Request"]["Choices"] if "StringEquals" in c]
    assert tuple(kinds) == REQUEST_KINDS
    assert states["Request"]["Default"] == "InvalidRequest"
    check = states["CheckDatabases"]
    assert check["Next"] == "FindUnknown" and check["ResultPath"] == "$.checked"
    configured = check["ItemProcessor"]["States"]["Configured"]
    (rule,) = configured["Choices"]
    assert [c["StringEquals"] for c in rule["Or"]] == ["sprint_reports_v2", "billing"]
    assert configured["Default"] == "Unknown"
    assert states["FindUnknown"]["Next"] == "AllConfigured"
    (unknown,) = states["AllConfigured"]["Choices"]
    assert unknown == {"Variable": "$.any_unknown", "BooleanEquals": True, "Next": "ListUnknown"}
    assert states["ListUnknown"]["Next"] == "UnknownDatabase"
    assert states["AllConfigured"]["Default"] == "BackupEach"


def test_a_refused_request_ends_in_a_succeed_state_no_alarm_counts(definition: dict[str, Any]) -> None:
    """An unknown database or a bad request is refused: Succeed BackupRefused with {"status": "refused", ...}, never a
    Fail state (ExecutionsFailed, alarm BackupWorkflowFailed, counts every one)."""
    states = definition["States"]
    assert states["BackupRefused"] == {"Type": "Succeed"}
    for name in ("InvalidRequest", "UnknownDatabase"):
        assert states[name]["Type"] == "Pass" and states[name]["Next"] == "BackupRefused"
        assert states[name]["Parameters"]["status"] == "refused" and states[name]["Parameters"]["error"] == name
    assert [n for n, s in states.items() if s["Type"] == "Fail"] == ["BackupsFailed"]


def test_the_nightly_schedule_starts_the_state_machine(synthesized: Synth) -> None:
    rule = synthesized.stack.schedules.rules["Backup"]
    props = synthesized.json["Resources"][synthesized.logical_id(rule)]["Properties"]
    assert props["ScheduleExpression"] == "cron(0 2 * * ? *)"
    (target,) = props["Targets"]
    machine_id = synthesized.logical_id(synthesized.stack.backup_workflow.state_machine)
    assert target["Arn"] == {"Ref": machine_id}
    assert json.loads(target["Input"]) == {"kind": "nightly"}
    role_id = target["RoleArn"]["Fn::GetAtt"][0]
    statements = [
        s
        for p in synthesized.resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert statements == [{"Action": "states:StartExecution", "Effect": "Allow", "Resource": {"Ref": machine_id}}]
    # the Backup function is no longer invoked by EventBridge: only through the state machine
    backup_id = synthesized.logical_id(synthesized.stack.functions.backup)
    assert not [
        p
        for p in synthesized.resources("AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] == {"Fn::GetAtt": [backup_id, "Arn"]}
    ]


def test_the_state_machine_may_invoke_the_backup_function_and_run_the_one_task_only(synthesized: Synth) -> None:
    workflow = synthesized.stack.backup_workflow
    statements = _policy_statements(synthesized, workflow.state_machine.role)
    invoke = [s for s in statements if "lambda:InvokeFunction" in json.dumps(s["Action"])]
    backup_arn = {"Fn::GetAtt": [synthesized.logical_id(synthesized.stack.functions.backup), "Arn"]}
    assert invoke == [
        {
            "Action": "lambda:InvokeFunction",
            "Effect": "Allow",
            "Resource": [backup_arn, {"Fn::Join": ["", [backup_arn, ":*"]]}],
        }
    ]
    actions = {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    # logs: delivery to its log group; ecs, iam, events: the Fargate task (.sync watches it through an EventBridge
    # rule Step Functions manages)
    assert {a.split(":")[0] for a in actions} == {"lambda", "logs", "xray", "ecs", "iam", "events"}
    task = synthesized.stack.fargate_task
    assert task is not None
    td = synthesized.logical_id(task.task_definition)
    [run] = [s for s in statements if s["Action"] == "ecs:RunTask"]
    assert td in json.dumps(run["Resource"])  # any revision of that one task definition, nothing else
    assert "*" not in json.dumps(run["Resource"]).replace(":*", "")
    [pass_role] = [s for s in statements if s["Action"] == "iam:PassRole"]
    assert pass_role["Resource"] == [
        {"Fn::GetAtt": [synthesized.logical_id(task.task_definition.task_role), "Arn"]},
        {"Fn::GetAtt": [synthesized.logical_id(task.task_definition.execution_role), "Arn"]},
    ]
    [events] = [s for s in statements if "events:PutRule" in s["Action"]]
    assert "rule/StepFunctionsGetEventsForECSTaskRule" in json.dumps(events["Resource"])


def test_executions_are_logged_traced_and_alarmed(synthesized: Synth) -> None:
    props = _machine(synthesized)["Properties"]
    assert props["TracingConfiguration"] == {"Enabled": True}
    logging = props["LoggingConfiguration"]
    assert (logging["Level"], logging["IncludeExecutionData"]) == ("ALL", False)
    log_group_id = synthesized.logical_id(synthesized.stack.backup_workflow.log_group)
    assert logging["Destinations"] == [
        {"CloudWatchLogsLogGroup": {"LogGroupArn": {"Fn::GetAtt": [log_group_id, "Arn"]}}}
    ]
    assert synthesized.json["Resources"][log_group_id]["Properties"]["RetentionInDays"] == 30  # retention_days.logs
    alarms = synthesized.stack.monitoring.alarms
    for what in ("Failed", "TimedOut", "Aborted"):
        alarm = synthesized.json["Resources"][synthesized.logical_id(alarms[f"Executions{what}-Backup"])]
        alarm_props = alarm["Properties"]
        assert (alarm_props["Namespace"], alarm_props["MetricName"]) == ("AWS/States", f"Executions{what}")
        assert alarm_props["Dimensions"] == [
            {
                "Name": "StateMachineArn",
                "Value": {"Ref": synthesized.logical_id(synthesized.stack.backup_workflow.state_machine)},
            }
        ]
        assert alarm_props["AlarmDescription"].endswith("-> BackupWorkflowFailed.")
    assert "BackupStateMachineArn" in synthesized.json["Outputs"]


@pytest.mark.parametrize("value", [0, 41, "four"])
def test_max_concurrency_is_validated(tmp_path: Path, value: object) -> None:
    raw = settings_dict()
    raw["backup"] = {"max_concurrency": value}
    with pytest.raises(SettingsError, match=r"dbops\.backup\.max_concurrency: "):
        load_settings(raw, make_base_dir(tmp_path))


def test_max_concurrency_defaults_to_four(tmp_path: Path) -> None:
    raw = settings_dict()
    del raw["backup"]
    settings, _ = load_settings(raw, make_base_dir(tmp_path))
    assert settings.backup.max_concurrency == 4


def test_each_database_is_planned_then_backed_up_in_lambda_or_on_fargate(
    definition: dict[str, Any], synthesized: Synth
) -> None:
    inner = definition["States"]["BackupEach"]["ItemProcessor"]
    states = inner["States"]
    assert inner["StartAt"] == "Plan"
    plan = states["Plan"]
    assert plan["Parameters"] == {"kind.$": "$.kind", "database.$": "$.database", "plan": True}
    assert plan["Next"] == "WhereToBackUp"
    assert plan["Retry"][0]["ErrorEquals"] == LAMBDA_TRANSIENT_ERRORS
    assert plan["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "RecordFailure"}]
    assert states["WhereToBackUp"] == {
        "Type": "Choice",
        "Choices": [{"Variable": "$.runner", "StringEquals": "fargate", "Next": "BackupOnFargate"}],
        "Default": "Backup",
    }
    fargate = states["BackupOnFargate"]
    assert fargate["Resource"].endswith(":states:::ecs:runTask.sync")  # RUN_JOB: waits for the task to stop
    params = fargate["Parameters"]
    assert params["LaunchType"] == "FARGATE"
    task = synthesized.stack.fargate_task
    assert task is not None  # the restore's stage task, shared: one cluster, one task definition, one image
    assert len(synthesized.resources("AWS::ECS::Cluster")) == 1  # the rehearsal task runs in it too
    [override] = params["Overrides"]["ContainerOverrides"]
    assert override["Name"] == task.container.container_name
    assert override["Command"] == BACKUP_TASK_COMMAND
    assert override["Environment"] == [
        {"Name": "DBOPS_BACKUP_DATABASE", "Value.$": "$.database"},
        {"Name": "DBOPS_BACKUP_KIND", "Value.$": "$.kind"},
    ]
    assert params["NetworkConfiguration"]["AwsvpcConfiguration"]["Subnets"]  # in the databases' VPC
    # its own Retry (ECS failing to start it, never the backup's failure) and Catch: the failure stays this database's
    assert fargate["Retry"][0]["ErrorEquals"] == ECS_TRANSIENT_ERRORS
    assert fargate["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "RecordFailure"}]
    assert fargate["ResultPath"] is None and fargate["Next"] == "BackedUpOnFargate"
    assert states["BackedUpOnFargate"]["Parameters"] == {
        "database.$": "$.database",
        "kind.$": "$.kind",
        "ok": True,
        "runner": "fargate",
    }


def test_the_task_may_tag_backups_as_the_backup_function_does(synthesized: Synth) -> None:
    task = synthesized.stack.fargate_task
    assert task is not None
    statements = _policy_statements(synthesized, task.task_definition.task_role)
    [tag] = [s for s in statements if s.get("Sid") == "TagBackups"]
    assert sorted(tag["Action"]) == ["s3:GetObjectTagging", "s3:PutObjectTagging"]
    assert "backups/*" in json.dumps(tag["Resource"])
    # and keep the retention ledger as the Backup function does (dbops.backup.retention_ledger)
    by_sid = {s.get("Sid"): s for s in statements}
    assert "retention/*" in json.dumps(by_sid["ReadRetentionLedger"]["Resource"])
    assert "retention/*" in json.dumps(by_sid["WriteBackupsOfEveryKind"]["Resource"])
    assert by_sid["ListRetentionLedger"]["Condition"] == {"StringLike": {"s3:prefix": ["retention/*"]}}


def test_the_task_may_send_metrics_in_dbops_namespace_only(synthesized: Synth) -> None:
    """The task's awslogs output is not read as EMF: its backup metrics go by PutMetricData."""
    task = synthesized.stack.fargate_task
    assert task is not None
    statements = _policy_statements(synthesized, task.task_definition.task_role)
    [put] = [s for s in statements if "cloudwatch:PutMetricData" in json.dumps(s["Action"])]
    assert put["Action"] == "cloudwatch:PutMetricData"
    assert put["Condition"] == {"StringEquals": {"cloudwatch:namespace": contract.METRICS_NAMESPACE}}


def test_without_a_task_image_every_backup_runs_in_lambda(tmp_path: Path) -> None:
    settings = settings_dict()
    settings.pop("restore_task_image")
    settings["databases"][0].pop("rehearsal")  # its watcher is that image
    synthesized = synth(make_base_dir(tmp_path), settings)
    parts = _machine(synthesized)["Properties"]["DefinitionString"]["Fn::Join"][1]
    definition = json.loads("".join(p if isinstance(p, str) else "TOKEN" for p in parts))
    inner = definition["States"]["BackupEach"]["ItemProcessor"]
    assert inner["StartAt"] == "Backup" and "Plan" not in inner["States"]
    assert synthesized.resources("AWS::ECS::TaskDefinition") == {}
