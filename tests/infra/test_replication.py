"""The second copy in another region (cdk.json `replication`): the backup bucket's replication rule and its role, the
DR stack's bucket and key in the DR region, the two replication alarms, and the DR template as clean as the main."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import ACCOUNT, DR_REGION, Synth, make_base_dir, settings_dict
from tests.infra.test_scanners import assert_cfn_lint_clean, run_checkov

OTHER_ACCOUNT = "210987654321"


def _resources(template: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r for r in template["Resources"].values() if r["Type"] == kind]


def _bucket(synthesized: Synth) -> dict[str, Any]:
    return synthesized.json["Resources"][synthesized.logical_id(synthesized.stack.storage.bucket)]["Properties"]


def _rule(synthesized: Synth) -> dict[str, Any]:
    (rule,) = _bucket(synthesized)["ReplicationConfiguration"]["Rules"]
    return rule  # type: ignore[no-any-return]


def _dr(synthesized: Synth) -> Any:
    return synthesized.stack.replica_stack


def _dr_template(synthesized: Synth) -> dict[str, Any]:
    return json.loads((synthesized.outdir / f"{_dr(synthesized).stack_name}.template.json").read_text())  # type: ignore[no-any-return]


def _joined(value: Any) -> str:
    """A Fn::Join rendered as text, references as ${name}."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        return "".join(_joined(part) for part in value["Fn::Join"][1])
    if "Ref" in value:
        return "${" + value["Ref"] + "}"
    return "${" + ".".join(value["Fn::GetAtt"]) + "}"


def _policy(synthesized: Synth) -> list[dict[str, Any]]:
    role = synthesized.stack.replication.role
    policy_id = synthesized.stack.resolve(
        synthesized.stack.get_logical_id(role.node.find_child("DefaultPolicy").node.default_child)
    )
    return synthesized.json["Resources"][policy_id]["Properties"]["PolicyDocument"]["Statement"]  # type: ignore[no-any-return]


def test_backups_replicate_to_the_dr_bucket_encrypted_with_the_replica_key(synthesized: Synth) -> None:
    rule = _rule(synthesized)
    assert rule["Filter"] == {"Prefix": "backups/"}
    assert rule["Status"] == "Enabled"
    assert rule["DeleteMarkerReplication"] == {"Status": "Disabled"}
    assert rule["SourceSelectionCriteria"] == {"SseKmsEncryptedObjects": {"Status": "Enabled"}}
    destination = rule["Destination"]
    assert (
        _joined(destination["Bucket"])
        == f"arn:${{AWS::Partition}}:s3:::dbops-test-replica-${{AWS::AccountId}}-{DR_REGION}"
    )
    assert _joined(destination["EncryptionConfiguration"]["ReplicaKmsKeyID"]) == (
        f"arn:${{AWS::Partition}}:kms:{DR_REGION}:${{AWS::AccountId}}:alias/dbops-test-replica"
    )
    assert destination["Metrics"] == {"Status": "Enabled", "EventThreshold": {"Minutes": 15}}
    assert destination["ReplicationTime"] == {"Status": "Enabled", "Time": {"Minutes": 15}}
    # same account: the replicas keep their owner, no account or ownership translation
    assert "Account" not in destination and "AccessControlTranslation" not in destination
    role_id = synthesized.logical_id(synthesized.stack.replication.role)
    assert _bucket(synthesized)["ReplicationConfiguration"]["Role"] == {"Fn::GetAtt": [role_id, "Arn"]}


def test_the_replication_role_is_least_privilege(synthesized: Synth) -> None:
    role = synthesized.json["Resources"][synthesized.logical_id(synthesized.stack.replication.role)]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}}
    ]
    assert role["RoleName"] == "dbops-test-replication"
    assert "ManagedPolicyArns" not in role
    bucket_id = synthesized.logical_id(synthesized.stack.storage.bucket)
    key_id = synthesized.logical_id(synthesized.stack.storage.key)
    replica = f"arn:${{AWS::Partition}}:s3:::dbops-test-replica-${{AWS::AccountId}}-{DR_REGION}"
    granted = {
        s["Sid"]: (sorted([s["Action"]] if isinstance(s["Action"], str) else s["Action"]), _joined(s["Resource"]))
        for s in _policy(synthesized)
    }
    assert granted == {
        "ReadReplicationRule": (["s3:GetReplicationConfiguration", "s3:ListBucket"], f"${{{bucket_id}.Arn}}"),
        "ReadBackupVersions": (
            sorted(
                [
                    "s3:GetObjectVersionForReplication",
                    "s3:GetObjectVersionAcl",
                    "s3:GetObjectVersionTagging",
                    # backup_lock is set: the replicas carry the backups' retention
                    "s3:GetObjectRetention",
                    "s3:GetObjectLegalHold",
                ]
            ),
            f"${{{bucket_id}.Arn}}/backups/*",
        ),
        # no s3:ReplicateDelete: delete markers are not replicated, nothing is deleted in the DR bucket
        "WriteReplicas": (["s3:ReplicateObject", "s3:ReplicateTags"], f"{replica}/backups/*"),
        "DecryptBackups": (["kms:Decrypt"], f"${{{key_id}.Arn}}"),
        "EncryptReplicas": (
            ["kms:Encrypt", "kms:GenerateDataKey"],
            f"arn:${{AWS::Partition}}:kms:{DR_REGION}:${{AWS::AccountId}}:key/*",
        ),
    }
    by_sid = {s["Sid"]: s for s in _policy(synthesized)}
    encrypt = by_sid["EncryptReplicas"]["Condition"]
    assert encrypt["ForAnyValue:StringEquals"] == {"kms:ResourceAliases": "alias/dbops-test-replica"}
    assert encrypt["StringEquals"] == {"kms:ViaService": f"s3.{DR_REGION}.amazonaws.com"}
    assert [_joined(v) for v in encrypt["StringLike"]["kms:EncryptionContext:aws:s3:arn"]] == [replica, f"{replica}/*"]
    decrypt = by_sid["DecryptBackups"]["Condition"]
    assert _joined(decrypt["StringEquals"]["kms:ViaService"]) == "s3.${AWS::Region}.amazonaws.com"


def test_the_dr_stack_holds_the_replica_bucket_and_its_key_in_the_dr_region(synthesized: Synth) -> None:
    dr = _dr(synthesized)
    assert dr.stack_name == "dbops-test-dr"
    assert dr.region == DR_REGION
    template = _dr_template(synthesized)
    bucket_id = dr.resolve(dr.get_logical_id(dr.storage.bucket.node.default_child))
    key_id = dr.resolve(dr.get_logical_id(dr.storage.key.node.default_child))
    assert template["Resources"][key_id]["Properties"]["EnableKeyRotation"] is True
    (alias,) = _resources(template, "AWS::KMS::Alias")
    assert alias["Properties"]["AliasName"] == "alias/dbops-test-replica"
    bucket = template["Resources"][bucket_id]["Properties"]
    assert _joined(bucket["BucketName"]) == f"dbops-test-replica-${{AWS::AccountId}}-{DR_REGION}"
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["ObjectLockEnabled"] is True  # like the source: backup_lock is set
    (encryption,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == {"Fn::GetAtt": [key_id, "Arn"]}
    # S3 does not replicate lifecycle expirations: the replicas expire by the same rules
    assert bucket["LifecycleConfiguration"] == _bucket(synthesized)["LifecycleConfiguration"]
    assert "ReplicationConfiguration" not in bucket
    exports = {name: output["Export"]["Name"] for name, output in template["Outputs"].items() if "Export" in output}
    assert exports == {
        "ReplicaBucketName": "dbops-test-dr-ReplicaBucketName",
        "ReplicaBucketArn": "dbops-test-dr-ReplicaBucketArn",
        "ReplicaKeyArn": "dbops-test-dr-ReplicaKeyArn",
    }
    # deployed first: S3 refuses a replication rule to a bucket that does not exist
    assert dr in synthesized.stack.dependencies


def test_replication_failures_and_lag_alarm_to_the_topic(synthesized: Synth) -> None:
    alarms = {
        a["Properties"]["AlarmName"]: a["Properties"] for a in synthesized.resources("AWS::CloudWatch::Alarm").values()
    }
    failed, lag = alarms["dbops-test-ReplicationFailed"], alarms["dbops-test-ReplicationLag"]
    bucket_id = synthesized.logical_id(synthesized.stack.storage.bucket)
    topic_id = synthesized.logical_id(synthesized.stack.monitoring.topic)
    for alarm in (failed, lag):
        assert alarm["Namespace"] == "AWS/S3"
        assert {d["Name"]: _joined(d["Value"]) for d in alarm["Dimensions"]} == {
            "SourceBucket": f"${{{bucket_id}}}",
            "DestinationBucket": f"dbops-test-replica-${{AWS::AccountId}}-{DR_REGION}",
            "RuleId": "backups-to-dr",
        }
        assert alarm["AlarmActions"] == [{"Ref": topic_id}]
        assert alarm["TreatMissingData"] == "notBreaching"
    assert (failed["MetricName"], failed["Statistic"], failed["ComparisonOperator"], failed["Threshold"]) == (
        "OperationsFailedReplication",
        "Sum",
        "GreaterThanThreshold",
        0,
    )
    assert (lag["MetricName"], lag["Statistic"], lag["ComparisonOperator"], lag["Threshold"]) == (
        "ReplicationLatency",
        "Maximum",
        "GreaterThanThreshold",
        45 * 60,  # lag_alarm_minutes, in seconds as S3 reports it
    )
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "### ReplicationFailed" in readme and "### ReplicationLag" in readme


@pytest.fixture(scope="module")
def dr_template_file(synthesized: Synth, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scan-dr") / "template.json"
    path.write_text(json.dumps(_dr_template(synthesized), indent=1))
    return path


def test_the_dr_template_has_no_unacknowledged_checkov_or_cfn_lint_finding(dr_template_file: Path) -> None:
    results = run_checkov(dr_template_file)
    assert [(f["check_id"], f["resource"]) for f in results["failed_checks"]] == []
    # the access-log bucket's two, as in the main stack; the restore functions' and their policies' (functions.py)
    assert sorted({c["check_id"] for c in results["skipped_checks"]}) == [
        "CKV_AWS_111",
        "CKV_AWS_115",
        "CKV_AWS_116",
        "CKV_AWS_173",
        "CKV_AWS_18",
        "CKV_AWS_21",
        "CKV_AWS_27",
    ]
    assert_cfn_lint_clean(dr_template_file)


def test_replication_is_off_unless_configured(tmp_path: Path) -> None:
    from aws_cdk import App

    from infra.application import _replica_stack
    from infra.settings import load_settings

    raw = settings_dict()
    del raw["replication"]
    settings, _ = load_settings(raw, make_base_dir(tmp_path))
    assert settings.replication is None
    assert _replica_stack(App(), settings, None, None, tmp_path, tmp_path) is None


@pytest.mark.parametrize(
    ("replication", "stack_name", "message"),
    [
        ({"region": "us-west-2"}, "a-stack-name-long-enough-for-no-bucket-name", r"give replication\.bucket_name"),
        ({"region": "us-west-2", "lag_alarm_minutes": 0}, "dbops", r"replication\.lag_alarm_minutes"),
        ({"region": "us-west-2", "account": "12345"}, "dbops", r"replication\.account"),
        ({"region": "west"}, "dbops", r"replication\.region"),
    ],
)
def test_bad_replication_settings_are_refused(
    tmp_path: Path, replication: dict[str, Any], stack_name: str, message: str
) -> None:
    from infra.settings import SettingsError, load_settings

    raw = {**settings_dict(), "replication": replication, "stack_name": stack_name}
    with pytest.raises(SettingsError, match=message):
        load_settings(raw, make_base_dir(tmp_path))


def test_a_replica_in_the_stacks_own_region_or_an_unknown_source_account_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from infra.application import build_app
    from infra.settings import SettingsError

    monkeypatch.setenv("CDK_DEFAULT_ACCOUNT", ACCOUNT)
    monkeypatch.setenv("CDK_DEFAULT_REGION", DR_REGION)
    base = make_base_dir(tmp_path)
    with pytest.raises(SettingsError, match="the stack's own region"):
        build_app({"dbops": settings_dict()}, outdir=str(tmp_path / "out"), base_dir=base)
    monkeypatch.delenv("CDK_DEFAULT_ACCOUNT")
    monkeypatch.delenv("CDK_DEFAULT_REGION")
    other = {**settings_dict(), "replication": {"region": DR_REGION, "account": OTHER_ACCOUNT}}
    with pytest.raises(SettingsError, match="the source account known"):
        build_app({"dbops": other}, outdir=str(tmp_path / "out"), base_dir=base)


def test_a_replica_in_another_account_is_owned_there_and_admits_only_the_replication_role(tmp_path: Path) -> None:
    """The two constructs alone, in stacks with a concrete source account (the cdk CLI's case)."""
    from aws_cdk import App, Environment, Stack
    from aws_cdk.assertions import Template

    from infra.application import FEATURE_FLAGS
    from infra.replication import ReplicaStack, Replication
    from infra.settings import load_settings
    from infra.storage import BackupStorage

    raw = {**settings_dict(), "replication": {"region": DR_REGION, "account": OTHER_ACCOUNT, "bucket_name": "acme-dr"}}
    settings, _ = load_settings(raw, make_base_dir(tmp_path))
    assert settings.replication is not None
    app = App(context=FEATURE_FLAGS)
    dr = ReplicaStack(
        app,
        "dbops-test-dr",
        settings=settings,
        source_account=ACCOUNT,
        env=Environment(account=OTHER_ACCOUNT, region=DR_REGION),
    )
    stack: Any = Stack(app, "dbops-test", env=Environment(account=ACCOUNT, region="eu-west-1"))
    stack.storage = BackupStorage(stack, "Storage", retention=settings.retention_days)
    stack.replication = Replication(
        stack,
        "Replication",
        settings=settings.replication,
        stack_name="dbops-test",
        bucket=stack.storage.bucket,
        key=stack.storage.key,
        locked=False,
    )
    result = Synth(app=app, stack=stack, template=Template.from_stack(stack), outdir=tmp_path, settings=raw)
    destination = _rule(result)["Destination"]
    assert _joined(destination["Bucket"]) == "arn:${AWS::Partition}:s3:::acme-dr"
    assert destination["Account"] == OTHER_ACCOUNT
    assert destination["AccessControlTranslation"] == {"Owner": "Destination"}
    assert _joined(destination["EncryptionConfiguration"]["ReplicaKmsKeyID"]) == (
        f"arn:${{AWS::Partition}}:kms:{DR_REGION}:{OTHER_ACCOUNT}:alias/dbops-test-replica"
    )
    writes = next(s for s in _policy(result) if s["Sid"] == "WriteReplicas")
    assert "s3:ObjectOwnerOverrideToBucketOwner" in writes["Action"]
    assert (dr.account, dr.region) == (OTHER_ACCOUNT, DR_REGION)
    template = Template.from_stack(dr).to_json()
    role_arn = f"arn:${{AWS::Partition}}:iam::{ACCOUNT}:role/dbops-test-replication"
    admitted = [
        s
        for kind in ("AWS::S3::BucketPolicy", "AWS::KMS::Key")
        for r in _resources(template, kind)
        for s in (r["Properties"].get("PolicyDocument") or r["Properties"]["KeyPolicy"])["Statement"]
        if s.get("Sid") in ("ReplicasFromSource", "SourceChecksVersioning", "SourceEncryptsReplicas")
    ]
    assert sorted(s["Sid"] for s in admitted) == [
        "ReplicasFromSource",
        "SourceChecksVersioning",
        "SourceEncryptsReplicas",
    ]
    for statement in admitted:
        assert _joined(statement["Condition"]["ArnEquals"]["aws:PrincipalArn"]) == role_arn
        assert _joined(statement["Principal"]["AWS"]) == f"arn:${{AWS::Partition}}:iam::{ACCOUNT}:root"
