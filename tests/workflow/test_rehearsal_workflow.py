"""The restore state machine's `mode: rehearse`, end to end: the CDK-synthesized definition run by moto's Step
Functions, the step functions' real handlers, and the rehearsal task's two containers (the fixture's Alembic project
as the application's migration image, dbops' watcher beside it) run as processes by the local ECS stand-in, which
gives them their URL from the rehearsal secret as ECS would; real PostgreSQL, a real SNS topic read through SQS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from dbops import aws
from dbops.aws.stepfunctions import follow
from dbops.backup.run import BackupRequest, run_backup
from dbops.cli import main
from dbops.cli.sample_data import create_sample_data
from dbops.postgres.connection import ConnectionSpec, connect
from dbops.rehearsal import scratch
from dbops.rehearsal.command import database_url
from dbops.rehearsal.models import RehearsalResult
from handlers.restore import drop_expired_copies
from local_stack.fingerprint import table_fingerprints
from local_stack.postgres import LocalPostgres
from tests.support import (
    LocalLambdaContext,
    emf_metrics,
    refusal,
    restore_environment,
    sns_messages,
    topic_with_queue,
)

ALEMBIC_INI = Path(__file__).parents[1] / "fixtures" / "alembic_sprint_reports" / "alembic.ini"
CATALOG_NAME = "sprint_reports_v2"
SECRET = "dbops-local/sprint_reports_v2/rehearsal"


@dataclass
class Production:
    """The sample at Alembic revision 0002 with a predeploy backup of it, and the topic's messages."""

    spec: ConnectionSpec
    bucket: str
    backup_id: str
    topic: str
    queue: str


def _alembic(spec: ConnectionSpec, *args: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url(spec)}
    subprocess.run([sys.executable, "-m", "alembic", "-c", str(ALEMBIC_INI), *args], env=env, check=True, timeout=60)


def _production(server: LocalPostgres) -> Iterator[Production]:
    admin = ConnectionSpec.from_url(server.url())
    name = f"prod_{uuid.uuid4().hex[:8]}"
    with connect(admin) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    spec = admin.for_database(name)
    create_sample_data(spec, 0.1)
    _alembic(spec, "upgrade", "0002")
    bucket = f"dbops-rehearse-{uuid.uuid4().hex[:10]}"
    aws.client("s3").create_bucket(Bucket=bucket)
    backup = run_backup(spec, BackupRequest(database=CATALOG_NAME, bucket=bucket, kind="predeploy"))
    topic, queue = topic_with_queue()
    yield Production(spec, bucket, backup.id, topic, queue)
    with connect(admin) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def production(pg: LocalPostgres, restore_machine: str) -> Iterator[Production]:
    """On every server version: for what reads the schema (the watcher, the schema comparison)."""
    yield from _production(pg)


@pytest.fixture(scope="module")
def production18(pg18: LocalPostgres, restore_machine: str) -> Iterator[Production]:
    """PostgreSQL 18 only: for the state machine's paths, which do not depend on the server's version."""
    yield from _production(pg18)


def _configure(production: Production, monkeypatch: pytest.MonkeyPatch) -> Production:
    rehearsal = {"secret_id": SECRET, "max_lock_s": 5.0, "max_duration_s": 120.0, "interval_s": 0.005}
    for key, value in restore_environment(production.spec, production.bucket, rehearsal=rehearsal).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DBOPS_TOPIC_ARN", production.topic)
    sns_messages(production.queue)  # what an earlier test left
    return production


@pytest.fixture
def configured(production: Production, monkeypatch: pytest.MonkeyPatch) -> Production:
    return _configure(production, monkeypatch)


@pytest.fixture
def configured18(production18: Production, monkeypatch: pytest.MonkeyPatch) -> Production:
    return _configure(production18, monkeypatch)


@dataclass
class Execution:
    description: dict[str, Any]
    states: list[str]
    output: dict[str, Any]
    scheduled: list[dict[str, Any]]  # the RunTask requests, as Step Functions sent them

    @property
    def status(self) -> str:
        return str(self.description["status"])


def _rehearse(machine: str, **request: Any) -> Execution:
    sfn = aws.client("stepfunctions")
    arn = sfn.start_execution(
        stateMachineArn=machine,
        name=f"rehearse-{uuid.uuid4().hex[:8]}",
        input=json.dumps({"mode": "rehearse", **request}),
    )["executionArn"]
    states: list[str] = []
    description = follow(arn, lambda kind, name: states.append(name) if kind == "entered" else None, poll_s=0.2)
    events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    scheduled = [
        json.loads(e["taskScheduledEventDetails"]["parameters"])
        for e in events
        if e["type"] == "TaskScheduled" and e["taskScheduledEventDetails"]["resourceType"] == "ecs"
    ]
    output = json.loads(description.get("output") or "{}")
    return Execution(description, states, output, scheduled)


def _result(bucket: str, execution: Execution) -> RehearsalResult:
    body = aws.client("s3").get_object(Bucket=bucket, Key=execution.output["result_key"])["Body"].read()
    return RehearsalResult.model_validate_json(body)


def _leftovers(spec: ConnectionSpec) -> tuple[list[str], list[str]]:
    with connect(spec.for_database("postgres")) as conn:
        dbs = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE '%\\_\\_rehearse\\_%'").fetchall()
        roles = conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'dbops\\_rehearse\\_%'").fetchall()
    return [r[0] for r in dbs], [r[0] for r in roles]


def _secret_url() -> str:
    return str(json.loads(aws.client("secretsmanager").get_secret_value(SecretId=SECRET)["SecretString"])["url"])


def test_a_safe_revision_passes_with_the_watcher_beside_the_migration(
    configured: Production, restore_machine: str, capfd: pytest.CaptureFixture[str]
) -> None:
    before = table_fingerprints(configured.spec)

    run = _rehearse(restore_machine, database=CATALOG_NAME, backup=configured.backup_id, command=["alembic",
                    "upgrade", "0003"], max_lock="30s")  # fmt: skip

    assert run.states[:6] == [
        "Request",
        "RestoreOrRehearse",
        "PrepareRehearsal",  # the backup is small: restored by the function itself
        "FillWhere",
        "SurveyScratch",
        "WhichMigration",
    ]
    assert run.states.count("AfterRun") == 2, run.states  # the upgrade, then the downgrade
    result = _result(configured.bucket, run)
    # the watcher (another container, the temporary role's session user) saw the migration's own statements
    # (the lock is held to the end of Alembic's one transaction, seen whichever of its statements was running)
    holds = [(h.relation.name, h.mode) for s in result.statements for h in s.locks]
    assert ("public.report_snapshots", "AccessExclusiveLock") in holds, result.statements
    assert [r.table for r in result.rewrites] == ["public.report_snapshots"]
    assert result.downgrade_command == ["alembic", "downgrade", "0002"]
    assert result.upgrade.seconds > 0 and result.downgrade is not None and result.downgrade.seconds > 0
    # the downgrade is watched too: the watcher beside it sampled and left its observations (its statements, a few
    # milliseconds at this scale, may fall between samples: tests/integration/test_rehearsal.py times one)
    key = f"rehearsals/{CATALOG_NAME}/{result.rehearsal_id}/observations-downgrade.json"
    watched = json.loads(aws.client("s3").get_object(Bucket=configured.bucket, Key=key)["Body"].read())
    assert watched["samples"] >= 2
    assert result.schema_check.identical is True
    assert (result.revision_before, result.revision_after_upgrade, result.revision_after_downgrade) == (
        "0002",
        "0003",
        "0002",
    )
    assert result.verdict == "pass" and run.status == "SUCCEEDED" and run.states[-1] == "RehearsalPassed"
    [message] = sns_messages(configured.queue)
    assert "on sprint_reports_v2: PASS" in message and result.rehearsal_id in message
    metrics = {m["name"]: m for m in emf_metrics(capfd.readouterr().out)}
    assert metrics["RehearsalPassed"]["value"] == [1.0] and "RehearsalFailed" not in metrics
    [longest] = metrics["RehearsalLongestLockSeconds"]["value"]
    assert longest == max(s.lock_s for s in [*result.statements, *result.downgrade_statements]) > 0
    # nothing left: no scratch database, no role, no URL; production as it was
    assert _leftovers(configured.spec) == ([], [])
    assert _secret_url() == ""
    assert table_fingerprints(configured.spec) == before


def test_no_password_travels_in_the_run_task_requests(configured18: Production, restore_machine: str) -> None:
    run = _rehearse(restore_machine, database=CATALOG_NAME, backup=configured18.backup_id, command=["alembic",
                    "upgrade", "0003"], skip_downgrade=True)  # fmt: skip

    assert run.status == "SUCCEEDED", run.description
    [request] = run.scheduled
    text = json.dumps(request)
    assert "postgresql://" not in text and "password" not in text.lower()
    overrides = {o["Name"]: o for o in request["Overrides"]["ContainerOverrides"]}
    assert overrides["migration"]["Command"] == ["alembic", "upgrade", "0003"]
    assert set(json.loads(overrides["watcher"]["Environment"][0]["Value"])) == {"bucket", "key", "interval_s", "max_s"}


def test_a_backup_too_large_for_lambda_fills_the_scratch_database_on_fargate(
    configured18: Production, restore_machine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DBOPS_FARGATE_THRESHOLD_BYTES", "0")  # every backup is "too large"

    run = _rehearse(restore_machine, database=CATALOG_NAME, command=["alembic", "upgrade", "0003"])

    assert run.states[2:6] == ["PrepareRehearsal", "FillWhere", "FillOnFargate", "SurveyScratch"]
    result = _result(configured18.bucket, run)
    assert result.verdict == "pass" and result.revision_before == "0002"  # the task restored the 0002 backup
    assert [r.table for r in result.rewrites] == ["public.report_snapshots"]
    assert _leftovers(configured18.spec) == ([], [])


def test_a_lock_over_the_limit_fails_the_verdict_and_says_why(
    configured: Production, restore_machine: str, capfd: pytest.CaptureFixture[str]
) -> None:
    run = _rehearse(restore_machine, database=CATALOG_NAME, command=["alembic", "upgrade", "0003"], max_lock="10ms",
                    kind="predeploy")  # fmt: skip

    # the rehearsal did its job: the execution succeeds (no RestoreFailed alarm), its verdict fails
    assert run.status == "SUCCEEDED" and run.states[-1] == "RehearsalFailed"
    assert run.output["verdict"] == "fail"
    assert run.output["summary"].startswith("ACCESS EXCLUSIVE on public.report_snapshots held")
    [message] = sns_messages(configured.queue)
    assert "on sprint_reports_v2: FAIL" in message and "ACCESS EXCLUSIVE on public.report_snapshots" in message
    metrics = {m["name"]: m for m in emf_metrics(capfd.readouterr().out)}
    assert metrics["RehearsalFailed"]["value"] == [1.0]
    assert _leftovers(configured.spec) == ([], [])


def test_a_migration_that_fails_is_a_failed_verdict_not_an_error(
    configured18: Production, restore_machine: str
) -> None:
    run = _rehearse(restore_machine, database=CATALOG_NAME, command=["alembic", "upgrade", "no-such-revision"])

    assert run.status == "SUCCEEDED" and run.states[-1] == "RehearsalFailed"
    assert run.states.count("AfterRun") == 1  # no downgrade after a failed upgrade
    assert run.output["summary"] == "the upgrade failed (exit 255)"  # Alembic's own exit code
    assert _leftovers(configured18.spec) == ([], [])


def test_a_refused_rehearsal_ends_refused_without_a_failure_or_a_notice(
    configured18: Production, restore_machine: str
) -> None:
    run = _rehearse(restore_machine, database=CATALOG_NAME, backup="20990101T000000Z-nope")

    # refused, not failed (#23): a Succeed state, no cleanup needed (nothing was made), no failure notice
    assert run.status == "SUCCEEDED" and run.states[-2:] == ["FillWhere", "RehearsalRefused"]
    output = json.loads(run.description["output"])
    assert (output["status"], output["error"]) == ("refused", "RehearsalRefused")
    assert "nothing to rehearse on" in output["reason"]
    assert sns_messages(configured18.queue) == []
    assert _leftovers(configured18.spec) == ([], [])


def _waiting_execution(seconds: int) -> str:
    """A real Step Functions execution that is RUNNING (a Wait state) until stopped."""
    sfn = aws.client("stepfunctions")
    definition = {"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": seconds, "End": True}}}
    role = "arn:aws:iam::123456789012:role/dbops-local"
    machine = sfn.create_state_machine(
        name=f"wait-{uuid.uuid4().hex[:8]}", definition=json.dumps(definition), roleArn=role
    )["stateMachineArn"]
    return str(sfn.start_execution(stateMachineArn=machine)["executionArn"])


def test_the_daily_sweep_drops_a_deployed_rehearsal_once_its_execution_is_over(
    configured18: Production, monkeypatch: pytest.MonkeyPatch
) -> None:
    running, aborted = _waiting_execution(600), _waiting_execution(600)
    aws.client("stepfunctions").stop_execution(executionArn=aborted)
    names = {}
    for label, execution in (("running", running), ("aborted", aborted)):
        _, names[label], _ = scratch.create(configured18.spec, CATALOG_NAME, execution=execution)
    time.sleep(1.1)
    monkeypatch.setattr(scratch, "STALE_AFTER", timedelta(seconds=1))  # not the minute a keeper has to connect

    done = drop_expired_copies({"database": CATALOG_NAME}, LocalLambdaContext())

    assert done["stale_rehearsals"][CATALOG_NAME] == [names["aborted"]]
    assert _leftovers(configured18.spec)[0] == [names["running"]]  # its execution runs: its steps still need it
    aws.client("stepfunctions").stop_execution(executionArn=running)
    scratch.drop_stale(configured18.spec, timedelta(0))
    assert _leftovers(configured18.spec) == ([], [])


def test_a_pipeline_runs_it_with_dbops_rehearse_deployed(
    configured18: Production, restore_machine: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DBOPS_DATABASE_URL", raising=False)
    argv = ["rehearse", "--deployed", "--state-machine-arn", restore_machine, "--database-name", CATALOG_NAME,
            "--bucket", configured18.bucket, "--max-lock", "10ms", "--", "alembic", "upgrade", "0003"]  # fmt: skip

    code = main(argv)

    out = capsys.readouterr().out
    assert code == 1
    assert "-> PrepareRehearsal" in out and "-> JudgeRehearsal" in out
    assert "on sprint_reports_v2: FAIL" in out  # the report, read from the bucket
    assert out.rstrip().splitlines()[-1].startswith("FAIL: ACCESS EXCLUSIVE on public.report_snapshots held")
    assert main([*argv[:-4], "--max-lock", "30s", "--", "alembic", "upgrade", "0003"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("PASS")
    assert main([*argv[:-4], "--json", "--", "alembic", "upgrade", "0003"]) == 1  # 10ms again
    printed = capsys.readouterr()
    # stdout holds the result and nothing of the CLI's own; the step functions' EMF lines are there too only
    # because the local stack runs them in this process
    result = RehearsalResult.model_validate_json(printed.out[printed.out.index('{\n  "rehearsal_id"') :])
    assert result.verdict == "fail" and printed.err.rstrip().splitlines()[-1].startswith("FAIL: ACCESS EXCLUSIVE")


# moto's engine reports its own waiting thread's end as an unhandled exception when a .sync task times out or its
# execution is stopped; the behaviour under test is ours
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_run_past_max_duration_fails_the_verdict(configured18: Production, restore_machine: str) -> None:
    sleeper = ["python", "-c", "import os, time, psycopg; c = psycopg.connect(os.environ['DATABASE_URL']); "
               "c.execute('LOCK TABLE users IN ACCESS SHARE MODE'); time.sleep(6)"]  # fmt: skip

    run = _rehearse(restore_machine, database=CATALOG_NAME, command=sleeper, skip_downgrade=True, max_duration="2s")

    assert run.status == "SUCCEEDED" and run.states[-1] == "RehearsalFailed"
    assert run.output["summary"] == "the upgrade ran longer than --max-duration 2.00s and was stopped"
    assert _leftovers(configured18.spec) == ([], [])


# moto's engine reports its own waiting thread's end as an unhandled exception when a .sync task times out or its
# execution is stopped; the behaviour under test is ours
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_rehearsal_aborted_mid_migration_is_dropped_by_the_daily_sweep(
    configured18: Production, restore_machine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sleeper = ["python", "-c", "import os, time, psycopg; c = psycopg.connect(os.environ['DATABASE_URL']); "
               "c.execute('LOCK TABLE users IN ACCESS EXCLUSIVE MODE'); time.sleep(8)"]  # fmt: skip
    sfn = aws.client("stepfunctions")
    request = {"mode": "rehearse", "database": CATALOG_NAME, "command": sleeper, "skip_downgrade": True}
    name = f"rehearse-{uuid.uuid4().hex[:8]}"
    arn = sfn.start_execution(stateMachineArn=restore_machine, name=name, input=json.dumps(request))["executionArn"]
    deadline = time.monotonic() + 60
    while not _migration_connected(configured18.spec) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _migration_connected(configured18.spec), "the migration never connected"
    sfn.stop_execution(executionArn=arn, error="Aborted", cause="a deploy pipeline was cancelled")
    # moto's engine stops the execution once the task's process has ended (the migration's 8 s): the execution
    # is then over, no step after the run has run, and the scratch database and its role are left behind
    assert follow(arn, poll_s=0.2, timeout_s=60)["status"] == "ABORTED"
    [scratch_db], [role] = _leftovers(configured18.spec)
    monkeypatch.setattr(scratch, "STALE_AFTER", timedelta(seconds=0))

    done = drop_expired_copies({"database": CATALOG_NAME}, LocalLambdaContext())

    assert done["stale_rehearsals"][CATALOG_NAME] == [scratch_db]
    assert _leftovers(configured18.spec) == ([], [])
    assert role.endswith(scratch_db.rsplit("__rehearse_", 1)[1])


def _migration_connected(spec: ConnectionSpec) -> bool:
    """A session of a rehearsal's temporary role holds a lock on its scratch database's users table."""
    with connect(spec.for_database("postgres")) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid "
            "WHERE a.usename LIKE 'dbops\\_rehearse\\_%' AND l.mode = 'AccessExclusiveLock'"
        ).fetchone()
    return bool(row and row[0])


def test_one_rehearsal_per_database_at_a_time(configured18: Production, restore_machine: str) -> None:
    running = _waiting_execution(600)  # a rehearsal of the same database, its execution still running
    _, busy, _ = scratch.create(configured18.spec, CATALOG_NAME, execution=running)

    run = _rehearse(restore_machine, database=CATALOG_NAME)

    assert f"another rehearsal of {CATALOG_NAME} is running: {busy}" in refusal(run.description)  # not a failure
    assert _leftovers(configured18.spec)[0] == [busy]  # the running one is left alone
    aws.client("stepfunctions").stop_execution(executionArn=running)
    scratch.drop_stale(configured18.spec, timedelta(0))
    assert _leftovers(configured18.spec) == ([], [])


def test_a_backup_that_no_longer_matches_its_manifest_fails_prepare_and_leaves_nothing(
    configured18: Production, restore_machine: str
) -> None:
    # a backup of its own, damaged for real after it was taken: the download is checked against the manifest
    request = BackupRequest(database=CATALOG_NAME, bucket=configured18.bucket, kind="manual")
    backup = run_backup(configured18.spec, request)
    s3 = aws.client("s3")
    s3.put_object(Bucket=configured18.bucket, Key=backup.dump.key, Body=b"not the archive")

    run = _rehearse(restore_machine, database=CATALOG_NAME, backup=backup.id)

    assert run.status == "FAILED" and run.states[-2:] == ["RehearsalCleanup", "RehearsalError"]
    assert "PrepareRehearsal" in run.states and "SurveyScratch" not in run.states
    [message] = sns_messages(configured18.queue)
    assert "could not be completed" in message and "differs from the manifest" in message
    # the scratch database PrepareRehearsal had made before the download failed is gone (found by its execution)
    assert _leftovers(configured18.spec) == ([], [])
