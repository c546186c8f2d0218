"""The CDK-synthesized backup state machine run by moto's Step Functions over real PostgreSQL databases: a Map with
one Backup invoke per database, where one database failing fails only its own backup; a database over the Lambda
threshold takes the Fargate branch, whose task's command runs here (local_stack.workflow)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from dbops import aws
from dbops.backup import catalog
from dbops.backup.run import BackupRequest, run_backup
from dbops.cli import main
from dbops.postgres.connection import ConnectionSpec
from local_stack.aws import LocalAws
from tests.support import cloudwatch_sums, emf_metrics, run_to_end
from tests.workflow.alarms import tripped

pytestmark = pytest.mark.any_server_version  # the flow, not the server: PostgreSQL 18 alone

DATABASES = ("app_one", "app_two", "app_bad")


@pytest.fixture(scope="module")
def backup_machine(local_aws: LocalAws) -> str:
    from local_stack.workflow import deploy_backup_workflow  # synthesizes with CDK: only when a test needs it

    return deploy_backup_workflow(DATABASES, max_concurrency=2, name=f"dbops-backup-{uuid.uuid4().hex[:8]}")


def _url(spec: ConnectionSpec, password: str | None = None) -> str:
    assert spec.password is not None
    secret = spec.password.get_secret_value() if password is None else password
    return f"postgresql://{spec.user}:{secret}@{spec.host}:{spec.port}/{spec.dbname}"


@pytest.fixture
def three_databases(
    make_database: Callable[..., ConnectionSpec], bucket: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, ConnectionSpec]]:
    """Three real databases configured for the Backup function; app_bad's configured password is wrong."""
    specs = {name: make_database() for name in DATABASES}
    configured = [
        {"name": name, "url": _url(spec, "not-the-password" if name == "app_bad" else None)}
        for name, spec in specs.items()
    ]
    monkeypatch.setenv("DBOPS_BUCKET", bucket)
    monkeypatch.setenv("DBOPS_DATABASES", json.dumps(configured))
    yield specs


def _run(machine: str, request: dict[str, Any]) -> dict[str, Any]:
    """Start an execution and follow it to its end: describe_execution plus `states`, the states entered."""
    execution = aws.client("stepfunctions").start_execution(
        stateMachineArn=machine, name=f"backup-{uuid.uuid4().hex[:12]}", input=json.dumps(request)
    )["executionArn"]
    return run_to_end(execution)


def _outputs(result: dict[str, Any], state: str) -> list[dict[str, Any]]:
    """What each run of `state` passed on, from the execution's history."""
    events = aws.client("stepfunctions").get_execution_history(executionArn=result["executionArn"], maxResults=1000)
    return [
        json.loads(e["stateExitedEventDetails"]["output"])
        for e in events["events"]
        if e.get("stateExitedEventDetails", {}).get("name") == state
    ]


def test_nightly_backs_up_every_database_and_one_failure_fails_only_that_one(
    three_databases: dict[str, ConnectionSpec],
    bucket: str,
    backup_machine: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = _run(backup_machine, {"kind": "nightly"})

    assert result["status"] == "FAILED"
    assert result["error"] == "BackupsFailed"
    assert result["cause"].startswith('1 of 3 backups failed: ["app_bad (BackupsFailed)"]'), result["cause"]
    committed = catalog.list_backups(bucket)
    assert sorted((e.manifest.database, e.manifest.kind) for e in committed) == [
        ("app_one", "nightly"),
        ("app_two", "nightly"),
    ]
    # nothing half-made of app_bad: no object under its prefix at all
    listed = aws.client("s3").list_objects_v2(Bucket=bucket, Prefix="backups/nightly/app_bad/")
    assert listed.get("KeyCount", 0) == 0
    out = capsys.readouterr().out
    metrics = [(m["name"], m["dimensions"]["database"]) for m in emf_metrics(out)]
    assert sorted(d for name, d in metrics if name == "BackupFailed") == ["app_bad"]
    assert sorted(d for name, d in metrics if name == "BackupSucceeded") == ["app_one", "app_two"]
    assert result["states"].count("Backup") == 3 and result["states"].count("RecordFailure") == 1
    assert result["states"].count("Plan") == 3 and "BackupOnFargate" not in result["states"]  # none backed up yet
    [failure] = _outputs(result, "RecordFailure")
    assert (failure["database"], failure["ok"], failure["error"]) == ("app_bad", False, "BackupsFailed")
    assert "password authentication failed" in failure["cause"]  # its own error, recorded in the execution
    assert "not-the-password" not in out + json.dumps(failure)


def test_dbops_backups_start_runs_the_state_machine_for_the_databases_named(
    three_databases: dict[str, ConnectionSpec],
    bucket: str,
    backup_machine: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The pre-deployment backup as a pipeline asks for it: `dbops backups start`, followed to its end."""
    machine = ["--state-machine-arn", backup_machine]
    code = main(["backups", "start", "--kind", "predeploy", "--database", "app_two", "--database", "app_two", *machine])

    out = capsys.readouterr().out
    assert code == 0, out
    [entry] = catalog.list_backups(bucket)
    assert (entry.manifest.database, entry.manifest.kind) == ("app_two", "predeploy")
    assert entry.manifest.schema_sql is not None  # predeploy: the schema-only dump too
    assert f"  app_two: backup {entry.manifest.id}\n" in out
    assert out.rstrip().endswith("succeeded: predeploy backup of every database asked for")

    # a failed database: exit 1, the execution's cause, never the password
    assert main(["backups", "start", "--database", "app_bad", *machine]) == 1
    out = capsys.readouterr().out
    assert "FAILED: 1 of 1 backups failed" in out and "password authentication failed" in out
    assert "not-the-password" not in out
    assert len(catalog.list_backups(bucket)) == 1


@pytest.mark.parametrize(
    ("request_body", "error", "cause"),
    [
        (
            {"kind": "nightly", "databases": ["app_one", "billing"]},
            "UnknownDatabase",
            'configured database: ["billing"]',
        ),
        ({"kind": "nightly", "databases": []}, "InvalidRequest", "a backup request is"),
        ({"kind": "weekly"}, "InvalidRequest", "nightly | predeploy | manual"),
        ({"databases": ["app_one"]}, "InvalidRequest", "a backup request is"),
    ],
)
def test_a_bad_request_is_refused_before_any_backup(
    bucket: str,
    backup_machine: str,
    monkeypatch: pytest.MonkeyPatch,
    request_body: dict[str, Any],
    error: str,
    cause: str,
) -> None:
    monkeypatch.setenv("DBOPS_BUCKET", bucket)
    monkeypatch.setenv("DBOPS_DATABASES", json.dumps([{"name": n, "url": "postgresql://x@h/db"} for n in DATABASES]))

    since = datetime.now(UTC)
    result = _run(backup_machine, request_body)

    # refused, not failed: no BackupWorkflowFailed (nor any other alarm of the synthesized stack)
    assert (result["status"], result["states"][-1]) == ("SUCCEEDED", "BackupRefused")
    output = json.loads(result["output"])
    assert (output["status"], output["error"]) == ("refused", error)
    assert cause in output["reason"]
    assert tripped(result, "Backup", DATABASES, since) == []
    assert "Backup" not in result["states"]
    assert catalog.list_backups(bucket) == []


def test_a_database_over_the_lambda_threshold_is_backed_up_by_the_fargate_task(
    three_databases: dict[str, ConnectionSpec],
    bucket: str,
    backup_machine: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """app_two's last backup (a real one) wrote more than the threshold: its nightly backup runs as the Fargate
    task, `python -m handlers.backup_task` run as a process against the real database; app_one's in Lambda."""
    previous = run_backup(three_databases["app_two"], BackupRequest(database="app_two", bucket=bucket, kind="manual"))
    monkeypatch.setenv("DBOPS_BACKUP_FARGATE_RAW_BYTES", str(previous.dump.raw_size - 1))
    sent_before = cloudwatch_sums("app_two").get("BackupSucceeded", 0)

    result = _run(backup_machine, {"kind": "nightly", "databases": ["app_one", "app_two"]})

    assert result["status"] == "SUCCEEDED", [f["cause"] for f in _outputs(result, "RecordFailure")]
    assert result["states"].count("Plan") == 2
    assert result["states"].count("BackupOnFargate") == 1 and result["states"].count("Backup") == 1
    plans = {p["database"]: p for p in _outputs(result, "Plan")}
    assert (plans["app_one"]["runner"], plans["app_one"]["reason"]) == ("lambda", "no committed backup yet")
    assert plans["app_two"]["runner"] == "fargate"
    assert plans["app_two"]["reason"].startswith(f"backup {previous.id} wrote {previous.dump.raw_size} bytes")
    # the Lambda state ran for app_one only, the ECS task state for app_two only
    assert [o["database"] for o in _outputs(result, "Backup")] == ["app_one"]
    [on_fargate] = _outputs(result, "BackedUpOnFargate")
    assert on_fargate == {"database": "app_two", "kind": "nightly", "ok": True, "runner": "fargate"}
    by_database = {e.manifest.database: e.manifest for e in catalog.list_backups(bucket, kind="nightly")}
    assert sorted(by_database) == ["app_one", "app_two"]
    in_lambda, in_task = by_database["app_one"], by_database["app_two"]
    assert in_lambda.model_dump().keys() == in_task.model_dump().keys()  # the same manifest, whichever ran it
    assert in_task.format_version == in_lambda.format_version == catalog.IDENTITY_FORMAT
    assert in_task.tables and all(t.oid is not None for t in in_task.tables)
    assert {t.qualified: t.rows for t in in_task.tables} == {t.qualified: t.rows for t in previous.tables}
    out = capsys.readouterr().out
    succeeded = [m["dimensions"]["database"] for m in emf_metrics(out) if m["name"] == "BackupSucceeded"]
    assert succeeded == ["app_one"]  # the function's, as EMF; the task's was sent with PutMetricData
    assert cloudwatch_sums("app_two")["BackupSucceeded"] == sent_before + 1
    assert f"backed up app_two (nightly): backup {in_task.id}" in out


def test_a_failed_fargate_backup_fails_only_that_database(
    three_databases: dict[str, ConnectionSpec], bucket: str, backup_machine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """app_bad is configured to back up on Fargate and its password is wrong: its task exits 3 (could not run),
    which the branch's Catch records for app_bad alone."""
    configured = json.loads(os.environ["DBOPS_DATABASES"])
    for db in configured:
        if db["name"] == "app_bad":
            db["backup_runner"] = "fargate"
    monkeypatch.setenv("DBOPS_DATABASES", json.dumps(configured))

    result = _run(backup_machine, {"kind": "manual", "databases": ["app_one", "app_bad"]})

    assert (result["status"], result["error"]) == ("FAILED", "BackupsFailed")
    assert result["states"].count("BackupOnFargate") == 1 and "BackedUpOnFargate" not in result["states"]
    [failure] = _outputs(result, "RecordFailure")
    assert (failure["database"], failure["ok"]) == ("app_bad", False)
    assert "password authentication failed" in failure["cause"]
    assert "not-the-password" not in json.dumps(failure)
    assert [(e.manifest.database, e.manifest.kind) for e in catalog.list_backups(bucket)] == [("app_one", "manual")]
