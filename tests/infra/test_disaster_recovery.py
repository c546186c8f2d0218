"""Restores in the DR region (cdk.json `replication.restore`): the DR stack's restore state machine and its
functions over the replica bucket and key only, the weekly disaster drill and its alarms, and the settings' errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dbops import contract
from infra.restore_workflow import STEP_HANDLERS
from tests.infra.conftest import DR_REGION, DR_SECRET, Synth, all_states, make_base_dir, secret_arn, settings_dict

DATABASE = "sprint_reports_v2"


def _template(synthesized: Synth) -> dict[str, Any]:
    dr = synthesized.stack.replica_stack
    return json.loads((synthesized.outdir / f"{dr.stack_name}.template.json").read_text())  # type: ignore[no-any-return]


def _of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def _ids(synthesized: Synth) -> tuple[str, str]:
    dr = synthesized.stack.replica_stack
    return tuple(  # type: ignore[return-value]
        dr.resolve(dr.get_logical_id(c.node.default_child)) for c in (dr.storage.bucket, dr.storage.key)
    )


def _refs(value: Any) -> set[str]:
    """Every logical id a template value refers to (Ref, Fn::GetAtt)."""
    if isinstance(value, dict):
        if "Ref" in value:
            return {value["Ref"]}
        if "Fn::GetAtt" in value:
            return {value["Fn::GetAtt"][0]}
        return set().union(*(_refs(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_refs(v) for v in value)) if value else set()
    return set()


def test_the_dr_stack_has_the_restore_state_machine_and_only_its_functions(synthesized: Synth) -> None:
    template = _template(synthesized)
    (machine,) = _of(template, "AWS::StepFunctions::StateMachine").values()
    assert machine["Properties"]["StateMachineName"] == "dbops-restore"
    functions = _of(template, "AWS::Lambda::Function")
    handlers = sorted(f["Properties"]["Handler"] for f in functions.values())
    assert handlers == sorted(set(STEP_HANDLERS.values()))  # no backup, health, maintenance or rehearsal here
    # every step's function is one the state machine invokes
    assert set(functions) <= _refs(machine["Properties"]["DefinitionString"])
    bucket_id, _ = _ids(synthesized)
    assert "ReplicationConfiguration" not in template["Resources"][bucket_id]["Properties"]
    assert "RestoreStateMachineArn" in " ".join(template["Outputs"])


def test_every_stage_of_the_dr_state_machine_runs_in_lambda_and_every_choice_has_choices(synthesized: Synth) -> None:
    """No Fargate task in the DR stack: the stage goes straight to the Stage function (Step Functions refuses a
    Choice state without choices)."""
    (machine,) = _of(_template(synthesized), "AWS::StepFunctions::StateMachine").values()
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    states = all_states(json.loads("".join(p if isinstance(p, str) else "TOKEN" for p in parts))["States"])
    assert "StageOnFargate" not in states and "StageWhere" not in states
    assert all(state["Choices"] for state in states.values() if state["Type"] == "Choice")
    assert states["SafetyBackupAndStage"]["Branches"][1]["StartAt"] == "Stage"


def test_the_dr_functions_read_the_replica_bucket_and_the_dr_databases_from_their_settings(
    synthesized: Synth,
) -> None:
    template = _template(synthesized)
    bucket_id, _ = _ids(synthesized)
    for function in _of(template, "AWS::Lambda::Function").values():
        env = function["Properties"]["Environment"]["Variables"]
        assert env[contract.ENV_BUCKET] == {"Ref": bucket_id}
        (database,) = json.loads(env[contract.ENV_DATABASES])
        assert database["name"] == DATABASE and database["secret_id"] == DR_SECRET
        assert "rds_instance_id" not in database and "app_hook" not in database  # the main region's, not here
        assert database["restore_checks"] == ["SELECT count(*) > 0 FROM users"]  # the source's own checks
        assert function["Properties"]["VpcConfig"]["SubnetIds"] == [
            "subnet-0f1e2d3c4b5a60001",
            "subnet-0f1e2d3c4b5a60002",
        ]


def test_the_dr_functions_may_touch_only_the_replica_bucket_and_key(synthesized: Synth) -> None:
    template = _template(synthesized)
    bucket_id, key_id = _ids(synthesized)
    topic_key = synthesized.stack.replica_stack.restores.monitoring.topic_key
    topic_key_id = synthesized.stack.replica_stack.resolve(
        synthesized.stack.replica_stack.get_logical_id(topic_key.node.default_child)
    )
    roles = {f["Properties"]["Role"]["Fn::GetAtt"][0] for f in _of(template, "AWS::Lambda::Function").values()}
    policies = [p for p in _of(template, "AWS::IAM::Policy").values() if _refs(p["Properties"]["Roles"]) & roles]
    assert len(policies) == len(roles)
    for policy in policies:
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            if any(a.startswith("s3:") for a in actions):
                assert _refs(resources) == {bucket_id}, statement
                assert "s3:PutReplicationConfiguration" not in actions
            if any(a.startswith("kms:") for a in actions):
                assert _refs(resources) <= {key_id, topic_key_id}, statement
            if any(a.startswith("secretsmanager:") for a in actions):
                assert resources == [DR_SECRET], statement
    text = json.dumps(policies)
    assert secret_arn(DATABASE) not in text and "billing" not in text  # nothing of the main region's databases


def test_the_disaster_drill_runs_weekly_on_the_newest_verified_replica(synthesized: Synth) -> None:
    template = _template(synthesized)
    (machine_id,) = _of(template, "AWS::StepFunctions::StateMachine")
    (rule,) = _of(template, "AWS::Events::Rule").values()
    assert rule["Properties"]["ScheduleExpression"] == "cron(0 9 ? * SUN *)"  # replication.restore.drill_schedule
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Ref": machine_id}
    assert json.loads(target["Input"]) == {"backup": "latest", "database": DATABASE, "mode": "drill", "disaster": True}
    assert "DeadLetterConfig" in target


def test_the_disaster_drill_alarms_when_it_fails_or_its_recovery_point_is_too_old(synthesized: Synth) -> None:
    template = _template(synthesized)
    alarms = {a["Properties"]["AlarmName"]: a["Properties"] for a in _of(template, "AWS::CloudWatch::Alarm").values()}
    failed = alarms[f"dbops-test-DisasterDrillFailed-{DATABASE}"]
    old = alarms[f"dbops-test-DisasterRecoveryPointOld-{DATABASE}"]
    for alarm, metric, statistic, comparison, threshold in (
        (failed, "DisasterDrillFailed", "Sum", "GreaterThanOrEqualToThreshold", 1),
        (old, "DisasterRecoveryPointAgeSeconds", "Maximum", "GreaterThanThreshold", 36 * 3600),
    ):
        assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == ("dbops", metric, statistic)
        assert (alarm["ComparisonOperator"], alarm["Threshold"]) == (comparison, threshold)
        assert alarm["Dimensions"] == [{"Name": "database", "Value": DATABASE}]
        (topic_id,) = _of(template, "AWS::SNS::Topic")
        assert alarm["AlarmActions"] == [{"Ref": topic_id}]  # the DR stack's own topic: alarms publish in-region
    # a drill that stopped running: no recovery point reported on any of the last 7 days (a day without data breaches)
    missing = alarms[f"dbops-test-DisasterDrillMissing-{DATABASE}"]
    assert (missing["MetricName"], missing["Statistic"], missing["Period"]) == (
        "DisasterRecoveryPointAgeSeconds",
        "SampleCount",
        86400,
    )
    assert (missing["ComparisonOperator"], missing["Threshold"], missing["TreatMissingData"]) == (
        "LessThanThreshold",
        1,
        "breaching",
    )
    assert missing["EvaluationPeriods"] == missing["DatapointsToAlarm"] == 7  # 7 days: CloudWatch's longest window
    assert any(name.startswith("dbops-test-ExecutionsFailed-Restore") for name in alarms)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for kind in ("DisasterDrillFailed", "DisasterRecoveryPointOld", "DisasterDrillMissing"):
        assert f"\n### {kind}\n" in readme, kind


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "ledger"}, r"ledger is not in databases\[\]"),
        ({"secret_arn": secret_arn(DATABASE)}, r"its secret is in eu-west-1, not the DR region us-west-2"),
        ({"ca_bundle": None}, r"sslmode verify-full needs ca_bundle"),
        ({"sslmode": "sometimes"}, r"replication\.restore\.databases\.0\.sslmode"),
    ],
)
def test_bad_dr_database_settings_are_refused_with_a_clear_error(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    from infra.settings import SettingsError, load_settings

    raw = settings_dict()
    (db,) = raw["replication"]["restore"]["databases"]
    db.update(change)
    if db["ca_bundle"] is None:
        del db["ca_bundle"]
    with pytest.raises(SettingsError, match=message) as raised:
        load_settings(raw, make_base_dir(tmp_path))
    assert "Value error" not in str(raised.value)


def test_without_restore_settings_the_dr_stack_holds_only_the_replica(tmp_path: Path) -> None:
    from aws_cdk import App

    from infra.application import FEATURE_FLAGS, _replica_stack
    from infra.settings import load_settings

    raw = settings_dict()
    del raw["replication"]["restore"]
    settings, certs = load_settings(raw, make_base_dir(tmp_path))
    stack = _replica_stack(App(context=FEATURE_FLAGS), settings, None, None, certs, tmp_path)
    assert stack is not None and stack.restores is None
    assert stack.region == DR_REGION
