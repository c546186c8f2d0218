"""Each function: its own role with exactly what its handler uses, its own log group, the right runtime set-up."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from dbops.backup.database_backup import format_for
from dbops.settings import FunctionSettings
from tests.infra.conftest import GROUPS, SECRET_KEY, SUBNETS, Synth, secret_arn

SECRETS = [secret_arn("sprint_reports_v2"), secret_arn("billing")]
ENI_ACTIONS = [
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
]


def _function(synthesized: Synth, name: str) -> dict[str, Any]:
    function = synthesized.stack.functions.by_name[name]
    return synthesized.json["Resources"][synthesized.logical_id(function)]  # type: ignore[no-any-return]


def _statements(synthesized: Synth, name: str) -> list[dict[str, Any]]:
    role_id = synthesized.logical_id(synthesized.stack.functions.by_name[name].role)
    policies = [
        p for p in synthesized.resources("AWS::IAM::Policy").values() if {"Ref": role_id} in p["Properties"]["Roles"]
    ]
    assert len(policies) == 1, f"{name}: expected one policy on its role, found {len(policies)}"
    return policies[0]["Properties"]["PolicyDocument"]["Statement"]  # type: ignore[no-any-return]


def _by_sid(statements: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    def sid(s: dict[str, Any]) -> str:
        if "Sid" in s:
            return str(s["Sid"])
        if "xray:PutTraceSegments" in s["Action"]:
            return "XRay"
        return "DeadLetters" if s["Action"] == "sqs:SendMessage" else "?"

    return {sid(s): s for s in statements}


def _dead_letters(synthesized: Synth) -> dict[str, dict[str, Any]]:
    """A scheduled function's own dead-letter queue: it may send to it, nothing more."""
    queue_id = synthesized.logical_id(synthesized.stack.dead_letter_queue)
    return {
        "DeadLetters": {"Action": "sqs:SendMessage", "Effect": "Allow", "Resource": {"Fn::GetAtt": [queue_id, "Arn"]}}
    }


def _ids(synthesized: Synth, name: str) -> tuple[str, str, str]:
    stack = synthesized.stack
    return (
        synthesized.logical_id(stack.storage.bucket),
        synthesized.logical_id(stack.storage.key),
        synthesized.logical_id(stack.functions.log_groups[name]),
    )


def _common(log_id: str) -> dict[str, dict[str, Any]]:
    return {
        "WriteOwnLogs": {
            "Sid": "WriteOwnLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": {"Fn::GetAtt": [log_id, "Arn"]},
        },
        "ReadDatabaseSecrets": {
            "Sid": "ReadDatabaseSecrets",
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": SECRETS,
        },
        "DecryptDatabaseSecrets": {
            "Sid": "DecryptDatabaseSecrets",
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": SECRET_KEY,
            "Condition": {
                "StringEquals": {
                    "kms:ViaService": {"Fn::Join": ["", ["secretsmanager.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}
                }
            },
        },
        "VpcNetworkInterfaces": {
            "Sid": "VpcNetworkInterfaces",
            "Effect": "Allow",
            "Action": ENI_ACTIONS,
            "Resource": "*",
        },
        "XRay": {
            "Effect": "Allow",
            "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
            "Resource": "*",
        },
    }


def _list_backups(bucket_id: str) -> dict[str, Any]:
    return {
        "Sid": "ListBackups",
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": {"Fn::GetAtt": [bucket_id, "Arn"]},
        "Condition": {"StringLike": {"s3:prefix": ["backups/*"]}},
    }


def _objects(bucket_id: str, prefix: str = "backups") -> dict[str, Any]:
    return {"Fn::Join": ["", [{"Fn::GetAtt": [bucket_id, "Arn"]}, f"/{prefix}/*"]]}


def test_backup_role_writes_reads_and_tags_backups_reads_its_secrets_and_nothing_else(synthesized: Synth) -> None:
    bucket_id, key_id, log_id = _ids(synthesized, "Backup")
    # the retention ledger beside the backups (dbops.backup.retention_ledger)
    backups_and_ledger = [_objects(bucket_id), _objects(bucket_id, "retention")]
    expected = {
        **_common(log_id),
        "ListBackups": {
            **_list_backups(bucket_id),
            "Condition": {"StringLike": {"s3:prefix": ["backups/*", "retention/*"]}},
        },
        "ReadBackups": {
            "Sid": "ReadBackups",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": backups_and_ledger,
        },
        "WriteBackups": {
            "Sid": "WriteBackups",
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject"],
            "Resource": backups_and_ledger,
        },
        "TagBackups": {  # retention: which backups the lifecycle may expire
            "Sid": "TagBackups",
            "Effect": "Allow",
            "Action": ["s3:GetObjectTagging", "s3:PutObjectTagging"],
            "Resource": _objects(bucket_id),
        },
        "LockBackups": {  # backups written with their Object Lock retention, weekly and monthly ones lengthened
            "Sid": "LockBackups",
            "Effect": "Allow",
            "Action": ["s3:PutObjectRetention", "s3:GetObjectRetention"],
            "Resource": _objects(bucket_id),
        },
        "BackupKey": {
            "Sid": "BackupKey",
            "Effect": "Allow",
            "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
            "Resource": {"Fn::GetAtt": [key_id, "Arn"]},
        },
    }
    assert _by_sid(_statements(synthesized, "Backup")) == expected


def test_health_role_reads_the_catalog_and_keeps_its_counters_under_health(synthesized: Synth) -> None:
    bucket_id, key_id, log_id = _ids(synthesized, "Health")
    health = {"Fn::Join": ["", [{"Fn::GetAtt": [bucket_id, "Arn"]}, "/health/*"]]}
    expected = {
        **_common(log_id),
        **_dead_letters(synthesized),
        "ListBackups": {
            **_list_backups(bucket_id),
            "Condition": {"StringLike": {"s3:prefix": ["backups/*", "health/*"]}},
        },
        "ReadBackups": {
            "Sid": "ReadBackups",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": [_objects(bucket_id), health],
        },
        # the temp_files probe's counters (dbops.health.counters): under health/ only, never a backup
        "WriteBackups": {
            "Sid": "WriteBackups",
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject"],
            "Resource": health,
        },
        "BackupKey": {
            "Sid": "BackupKey",
            "Effect": "Allow",
            "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
            "Resource": {"Fn::GetAtt": [key_id, "Arn"]},
        },
    }
    statements = _by_sid(_statements(synthesized, "Health"))
    # point-in-time readiness of the databases on RDS (tests/infra/conftest.py: an instance and an Aurora cluster)
    instances, clusters = statements.pop("DescribeInstances"), statements.pop("DescribeClusters")
    # probes rds_metrics and rds_engine_version
    assert statements.pop("ReadRdsMetrics")["Action"] == [
        "cloudwatch:GetMetricStatistics",
        "rds:DescribeDBEngineVersions",
    ]
    assert (instances["Action"], clusters["Action"]) == ("rds:DescribeDBInstances", "rds:DescribeDBClusters")
    assert json.dumps(instances["Resource"]).endswith(':db:sprint-reports-prod"]]}')
    assert json.dumps(clusters["Resource"]).endswith(':cluster:billing-aurora"]]}')
    assert statements == expected


def test_maintenance_role_has_no_bucket_or_backup_key_access(synthesized: Synth) -> None:
    _, _, log_id = _ids(synthesized, "Maintenance")
    assert _by_sid(_statements(synthesized, "Maintenance")) == {**_common(log_id), **_dead_letters(synthesized)}


def test_no_role_has_managed_policies_or_metric_permissions(synthesized: Synth) -> None:
    for name in ("Backup", "Health", "Maintenance"):
        role_id = synthesized.logical_id(synthesized.stack.functions.by_name[name].role)
        role = synthesized.json["Resources"][role_id]["Properties"]
        assert "ManagedPolicyArns" not in role
        assert role["AssumeRolePolicyDocument"]["Statement"] == [
            {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}}
        ]
        actions = json.dumps(_statements(synthesized, name))
        assert "cloudwatch:PutMetricData" not in actions  # EMF metrics travel through the logs


@pytest.mark.parametrize(
    ("name", "handler", "memory", "timeout"),
    [
        ("Backup", "handlers.backup.handler", 2048, 900),
        ("Health", "handlers.health.handler", 512, 120),
        ("Maintenance", "handlers.maintenance.handler", 512, 900),
    ],
)
def test_function_runtime_settings(synthesized: Synth, name: str, handler: str, memory: int, timeout: int) -> None:
    props = _function(synthesized, name)["Properties"]
    log_id = synthesized.logical_id(synthesized.stack.functions.log_groups[name])
    assert props["Handler"] == handler
    assert props["Runtime"] == "python3.12"
    assert props["Architectures"] == ["arm64"]
    assert props["MemorySize"] == memory
    assert props["Timeout"] == timeout
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert props["LoggingConfig"] == {
        "ApplicationLogLevel": "INFO",
        "LogFormat": "JSON",
        "LogGroup": {"Ref": log_id},
        "SystemLogLevel": "WARN",
    }
    assert props["VpcConfig"] == {"SubnetIds": SUBNETS, "SecurityGroupIds": GROUPS}
    layers = synthesized.stack.layers
    assert props["Layers"] == [{"Ref": synthesized.logical_id(layer)} for layer in layers.all]
    log_group = synthesized.json["Resources"][log_id]
    assert log_group["Properties"] == {
        "LogGroupName": f"/dbops/dbops-test/{name.lower()}",
        "RetentionInDays": 30,
        "KmsKeyId": {"Fn::GetAtt": [synthesized.logical_id(synthesized.stack.logs_key), "Arn"]},
    }


def test_function_environment_is_what_the_functions_settings_model_reads(
    synthesized: Synth, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _function(synthesized, "Backup")["Properties"]["Environment"]["Variables"]
    assert env["DBOPS_BUCKET"] == {"Ref": synthesized.logical_id(synthesized.stack.storage.bucket)}
    assert env["DBOPS_PG_BIN"] == "/opt/bin"
    assert env["DBOPS_RETENTION_KEEP"] == "5"  # retention_days.keep_newest_verified
    assert json.loads(env["DBOPS_DATABASES"]) == [
        {
            "name": "sprint_reports_v2",
            "secret_id": secret_arn("sprint_reports_v2"),
            "sslmode": "verify-full",
            "sslrootcert": "/opt/certs/test-ca.pem",
            "app_hook": {"type": "ssm", "parameter": "/sprint-reports/maintenance-mode"},
            "restore_checks": ["SELECT count(*) > 0 FROM users"],
            "rds_instance_id": "sprint-reports-prod",
            "rehearsal": {
                "secret_id": "dbops-test/sprint_reports_v2/rehearsal",
                "command": ["alembic", "-c", "/app/alembic.ini", "upgrade", "head"],
                "downgrade": None,
                "skip_downgrade": False,
                "url_env": "SQLALCHEMY_URL",
                "version_table": "alembic_version",
                "max_lock_s": 3.0,
                "max_duration_s": 1200.0,
                "interval_s": 0.02,
            },
        },
        {
            "name": "billing",
            "secret_id": secret_arn("billing"),
            "sslmode": "verify-full",
            "sslrootcert": "/opt/certs/test-ca.pem",
            "backup_runner": "fargate",
            "backup_format": "parallel",
            "backup_max_streams": 6,
            "rds_cluster_id": "billing-aurora",
        },
    ]
    # the contract with the functions: their own settings model accepts exactly this environment
    monkeypatch.setenv("DBOPS_BUCKET", "dbops-backups-example")
    for name in ("DBOPS_DATABASES", "DBOPS_PG_BIN", "DBOPS_RETENTION_KEEP"):
        monkeypatch.setenv(name, env[name])
    settings = FunctionSettings()  # type: ignore[call-arg]
    assert settings.pg_bin_dir == "/opt/bin"
    assert settings.retention_keep == 5
    assert [db.name for db in settings.databases] == ["sprint_reports_v2", "billing"]
    assert settings.database("billing").secret_id == secret_arn("billing")
    billing = settings.database("billing")  # cdk.json backup.format and backup.max_streams reach the functions
    assert (billing.backup_format, billing.backup_max_streams) == ("parallel", 6)
    assert format_for(settings, "billing").workers == min(6, os.cpu_count() or 1)
    assert settings.database("sprint_reports_v2").backup_format == "single"


def test_functions_asset_is_the_functions_folder_without_the_local_stack(synthesized: Synth) -> None:
    code = _function(synthesized, "Backup")["Properties"]["Code"]
    asset_hash = code["S3Key"].removesuffix(".zip")
    staged = synthesized.outdir / f"asset.{asset_hash}"
    assert (staged / "handlers" / "backup.py").is_file()
    assert (staged / "dbops" / "backup" / "run.py").is_file()
    assert not (staged / "local_stack").exists()
    assert not [f for f in staged.rglob("*.py") if "import moto" in f.read_text() or "from moto" in f.read_text()]
    assert not list(staged.rglob("__pycache__"))


def test_backup_retries_once_and_the_others_never(synthesized: Synth) -> None:
    configs = {
        c["Properties"]["FunctionName"]["Ref"]: c["Properties"]["MaximumRetryAttempts"]
        for c in synthesized.resources("AWS::Lambda::EventInvokeConfig").values()
    }
    ids = {name: synthesized.logical_id(f) for name, f in synthesized.stack.functions.by_name.items()}
    restore_steps = {ids[name]: 0 for name in ids if name.startswith("Restore")}
    assert len(restore_steps) == 13 + 1  # the steps and the daily drop of expired copies
    sweep = {ids["TemporaryInstanceSweep"]: 0}
    rehearsal_steps = {ids[name]: 0 for name in ids if name.startswith("Rehearsal")}
    assert len(rehearsal_steps) == 5
    assert configs == {
        ids["Backup"]: 1,
        ids["Health"]: 0,
        ids["Maintenance"]: 0,
        **restore_steps,
        **sweep,
        **rehearsal_steps,
    }


def test_functions_outside_a_vpc_get_no_network_interface_permissions(tmp_path: Any) -> None:
    from tests.infra.conftest import settings_dict, synth

    settings = settings_dict()
    for db in settings["databases"]:
        del db["vpc"]
        db.pop("rehearsal", None)  # rehearsals run in the databases' VPC
    result = synth(tmp_path, settings)
    props = _function(result, "Health")["Properties"]
    assert "VpcConfig" not in props
    assert "VpcNetworkInterfaces" not in _by_sid(_statements(result, "Health"))
