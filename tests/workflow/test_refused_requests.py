"""Refused is not failed (#23): a request validation refuses ends its execution in RestoreRefused (a Succeed state)
without tripping any alarm of the synthesized stack or sending a failure notice; a real failure still does both."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from dbops import aws, contract
from dbops.backup import catalog
from dbops.backup.run import BackupRequest, run_backup
from dbops.backup.verify import verify_backup
from dbops.postgres.connection import ConnectionSpec
from local_stack.metrics import emf_to_cloudwatch
from tests.support import sns_messages, table_checksums, topic_with_queue
from tests.workflow.alarms import metric_totals, tripped

pytestmark = pytest.mark.any_server_version  # the flow, not the server: PostgreSQL 18 alone

Run = Callable[..., dict[str, Any]]
DB = "sprint_reports_v2"


@pytest.fixture
def notified(sample_db: ConnectionSpec, configure: Callable[..., None], monkeypatch: pytest.MonkeyPatch) -> str:
    """The database configured, its notices going to a topic; returns the queue that reads them."""
    configure(sample_db)
    topic, queue = topic_with_queue()
    monkeypatch.setenv("DBOPS_TOPIC_ARN", topic)
    return queue


@pytest.mark.parametrize(
    ("request_args", "reason"),
    [
        ({"tables": ["usres"]}, "'usres' is not a table in backup"),
        ({"database": "billing"}, "unknown database 'billing'"),
    ],
    ids=["misspelled-table", "unknown-database"],
)
def test_a_refused_request_ends_refused_without_an_alarm_or_a_notice(
    sample_db: ConnectionSpec, bucket: str, notified: str, run_restore: Run, request_args: dict[str, Any], reason: str
) -> None:
    run_backup(sample_db, BackupRequest(database=DB, bucket=bucket))
    before = table_checksums(sample_db)
    since = datetime.now(UTC)
    counted = metric_totals(DB, contract.RESTORE_REFUSED, contract.RESTORE_FAILED)

    with emf_to_cloudwatch():
        result = run_restore(**request_args)

    assert result["status"] == "SUCCEEDED", result.get("cause")
    assert result["states"][-1] == "RestoreRefused"
    assert "Rollback" not in result["states"] and "NotifyFailure" not in result["states"]
    output = json.loads(result["output"])
    assert output["status"] == "refused" and reason in output["reason"], output
    assert tripped(result, "Restore", [DB, "billing"], since) == []
    after = metric_totals(DB, contract.RESTORE_REFUSED, contract.RESTORE_FAILED)
    assert (after[contract.RESTORE_REFUSED], after[contract.RESTORE_FAILED]) == (
        counted[contract.RESTORE_REFUSED] + 1,
        counted[contract.RESTORE_FAILED],
    )
    assert sns_messages(notified) == []
    assert table_checksums(sample_db) == before


def test_a_damaged_backup_still_fails_alarms_and_notifies(
    sample_db: ConnectionSpec, bucket: str, notified: str, run_restore: Run
) -> None:
    verify_backup(bucket, run_backup(sample_db, BackupRequest(database=DB, bucket=bucket)).id)
    key = catalog.find_backup(bucket, "latest").manifest.dump.key
    body = aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    aws.client("s3").put_object(Bucket=bucket, Key=key, Body=body[: len(body) // 2])
    since = datetime.now(UTC)
    counted = metric_totals(DB, contract.RESTORE_REFUSED, contract.RESTORE_FAILED)

    with emf_to_cloudwatch():
        result = run_restore()

    assert result["status"] == "FAILED"
    assert "NotifyFailure" in result["states"] and "RestoreRefused" not in result["states"]
    alarms = tripped(result, "Restore", [DB], since)
    assert {a.split("-", 2)[-1] for a in alarms} >= {"ExecutionsFailed-Restore", f"RestoreFailed-{DB}"}, alarms
    # the Lambda Errors alarm of the step that raised (stage: the archive does not match its manifest), no other
    assert [a for a in alarms if "-FunctionErrors-" in a] == ["dbops-test-FunctionErrors-Restore-stage"], alarms
    after = metric_totals(DB, contract.RESTORE_REFUSED, contract.RESTORE_FAILED)
    assert (after[contract.RESTORE_REFUSED], after[contract.RESTORE_FAILED]) == (
        counted[contract.RESTORE_REFUSED],
        counted[contract.RESTORE_FAILED] + 1,
    )
    assert any("FAILED" in m or "failed" in m for m in sns_messages(notified))
