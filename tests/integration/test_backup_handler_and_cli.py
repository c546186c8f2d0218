"""The Lambda handler (credentials from Secrets Manager) and the operator CLI, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dbops import aws
from dbops.aws import s3stream
from dbops.backup import catalog, retention
from dbops.postgres.connection import ConnectionSpec
from handlers.backup import handler
from local_stack.aws import LocalAws
from tests.support import LocalLambdaContext, emf_metrics, scheduled_event


def test_scheduled_event_backs_up_with_credentials_from_secrets_manager(
    sample_db: ConnectionSpec, bucket: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sample_db.password is not None
    secret = aws.client("secretsmanager").create_secret(
        Name=f"dbops/{bucket}",
        SecretString=json.dumps(
            {
                "engine": "postgres",
                "host": sample_db.host,
                "port": sample_db.port,
                "username": sample_db.user,
                "password": sample_db.password.get_secret_value(),
                "dbname": sample_db.dbname,
            }
        ),
    )
    monkeypatch.setenv("DBOPS_BUCKET", bucket)
    monkeypatch.setenv("DBOPS_DATABASES", json.dumps([{"name": "sprint_reports_v2", "secret_id": secret["ARN"]}]))

    result = handler(scheduled_event("dbops-nightly-backup"), LocalLambdaContext())

    out = capsys.readouterr().out
    [entry] = catalog.list_backups(bucket)
    assert result["results"][0]["backup_id"] == entry.manifest.id
    assert result["results"][0]["ok"] is True
    names = {m["name"]: m for m in emf_metrics(out)}
    assert names["BackupSucceeded"]["dimensions"] == {"database": "sprint_reports_v2"}
    assert names["BackupBytes"]["value"] == [float(entry.manifest.dump.size)]
    assert "BackupDurationSeconds" in names
    assert sample_db.password.get_secret_value() not in out


def test_unknown_database_in_event_fails_before_any_work(
    sample_db: ConnectionSpec, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DBOPS_BUCKET", bucket)
    monkeypatch.setenv("DBOPS_DATABASES", json.dumps([{"name": "sprint_reports_v2", "url": "postgresql://x@h/db"}]))
    with pytest.raises(Exception, match="unknown database 'billing'; configured: sprint_reports_v2"):
        handler({"kind": "nightly", "database": "billing"}, LocalLambdaContext())
    assert catalog.list_backups(bucket) == []


def test_missing_settings_are_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DBOPS_BUCKET", raising=False)
    monkeypatch.delenv("DBOPS_DATABASES", raising=False)
    with pytest.raises(Exception, match="bucket"):
        handler(scheduled_event("r"), LocalLambdaContext())


def _dbops(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "dbops.cli", *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )


def test_cli_backup_list_and_verify(sample_db: ConnectionSpec, bucket: str, local_aws: LocalAws) -> None:
    assert sample_db.password is not None
    url = (
        f"postgresql://{sample_db.user}:{sample_db.password.get_secret_value()}@{sample_db.host}:"
        f"{sample_db.port}/{sample_db.dbname}"
    )
    backup = _dbops(
        "backup",
        "--bucket",
        bucket,
        "--kind",
        "predeploy",
        "--database-name",
        "sr",
        env_extra={"DBOPS_DATABASE_URL": url},
    )
    assert backup.returncode == 0, backup.stderr
    assert "backup " in backup.stdout and "(predeploy) of sr" in backup.stdout
    assert "(database size), " in backup.stderr and " MB/s" in backup.stderr  # progress, plain lines into a pipe

    listed = _dbops("backups", "list", "--bucket", bucket, "--json")
    rows = json.loads(listed.stdout)
    assert [(r["kind"], r["database"], r["verified"]) for r in rows] == [("predeploy", "sr", None)]

    verified = _dbops("verify", "latest", "--bucket", bucket)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "  verify: " in verified.stderr and "/s" in verified.stderr
    table = _dbops("backups", "list", "--bucket", bucket)
    assert rows[0]["id"] in table.stdout and "yes" in table.stdout

    key = catalog.find_backup(bucket, rows[0]["id"]).manifest.dump.key
    aws.client("s3").put_object(Bucket=bucket, Key=key, Body=b"not a backup")
    failed = _dbops("verify", rows[0]["id"], "--bucket", bucket)
    assert failed.returncode == 1
    assert "failed verification" in failed.stdout


def test_cli_reports_unknown_backup_and_missing_flags(bucket: str, local_aws: LocalAws) -> None:
    unknown = _dbops("verify", "nope", "--bucket", bucket)
    assert unknown.returncode == 2  # refused: no such backup
    assert "backup 'nope' not found" in unknown.stderr

    missing = _dbops("backup", env_extra={"DBOPS_DATABASE_URL": "", "DBOPS_BUCKET": ""})  # empty counts as unset
    assert missing.returncode == 2
    assert "the following arguments are required: --database-url, --bucket" in missing.stderr


def test_every_lambda_backup_is_verified_so_retention_counts_it(
    sample_db: ConnectionSpec, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each backup the function takes is read back whole and recorded as verified; with the newest 3 verified kept,
    the fourth backup makes the first one expirable (and only it)."""
    assert sample_db.password is not None
    url = (
        f"postgresql://{sample_db.user}:{sample_db.password.get_secret_value()}@{sample_db.host}:{sample_db.port}/"
        f"{sample_db.dbname}"
    )
    monkeypatch.setenv("DBOPS_BUCKET", bucket)
    monkeypatch.setenv("DBOPS_DATABASES", json.dumps([{"name": "sprint_reports_v2", "url": url}]))
    monkeypatch.setenv("DBOPS_RETENTION_KEEP", "3")

    for _ in range(4):
        handler({"kind": "nightly", "database": "sprint_reports_v2"}, LocalLambdaContext())

    entries = catalog.list_backups(bucket)  # newest first
    assert [e.verified for e in entries] == [True] * 4
    expirable = [s3stream.get_tags(bucket, e.manifest.prefix + catalog.MANIFEST) for e in entries]
    assert [(tags or {}).get(retention.EXPIRABLE_TAG) for tags in expirable] == ["false", "false", "false", "true"]


def test_cli_backup_of_some_tables_refuses_bad_input_and_writes_nothing(
    sample_db: ConnectionSpec, bucket: str, local_aws: LocalAws
) -> None:
    assert sample_db.password is not None
    url = (
        f"postgresql://{sample_db.user}:{sample_db.password.get_secret_value()}@{sample_db.host}:"
        f"{sample_db.port}/{sample_db.dbname}"
    )
    env = {"DBOPS_DATABASE_URL": url, "DBOPS_KIND": ""}
    parallel = ["backup", "--bucket", bucket, "--format", "parallel"]
    cases = {
        # the single format has no tables-only kind
        ("backup", "--bucket", bucket, "--table", "users"): "--table takes a backup of some tables in the parallel "
        "format: add --format parallel",
        (*parallel, "--table", "usres"): f"'usres' is not a table in database {sample_db.dbname}; "
        "did you mean public.users?",
        (*parallel, "--table", "users", "--table", "nope.sprints"): "'nope.sprints' is not a table in database "
        f"{sample_db.dbname}; did you mean public.sprints?",
        (*parallel, "--table", '"Users"'): "'\"Users\"' is not a table",
        (*parallel, "--table", "users", "--kind", "nightly"): "a backup of some tables only cannot be of kind nightly",
        (*parallel, "--table", ""): "a table name is empty",
        (*parallel, "--table", "a.b.c"): "'a.b.c': too many dots",
    }
    for argv, message in cases.items():
        done = _dbops(*argv, env_extra=env)
        assert done.returncode == 2, (argv, done.stdout, done.stderr)
        assert done.stderr.startswith("dbops: error: ") and message in done.stderr, (argv, done.stderr)
        assert "Traceback" not in done.stderr and "Error:" not in done.stderr
    assert aws.client("s3").list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
