"""The backup as the Fargate task (`python -m handlers.backup_task`, the container's command) against real
PostgreSQL and the local S3, and the Backup function's plan: where a database's backup runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from dbops.backup import catalog
from dbops.backup.run import BackupRequest, run_backup
from dbops.contract import EXIT_COULD_NOT_RUN, EXIT_FAILURE, EXIT_USAGE
from dbops.postgres.connection import ConnectionSpec
from handlers.backup import handler
from local_stack.postgres import free_port
from tests.support import LocalLambdaContext, cloudwatch_sums, emf_metrics, limited_login

pytestmark = pytest.mark.any_server_version  # the flow, not the server: PostgreSQL 18 alone


def _url(spec: ConnectionSpec, password: str | None = None) -> str:
    assert spec.password is not None
    secret = spec.password.get_secret_value() if password is None else password
    return f"postgresql://{spec.user}:{secret}@{spec.host}:{spec.port}/{spec.dbname}"


def _task(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The container's command as the task runs it, with the overrides' environment."""
    return subprocess.run(
        [sys.executable, "-m", "handlers.backup_task"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_task_backs_up_the_database_and_writes_the_lambda_paths_manifest(
    sample_db: ConnectionSpec, bucket: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"app_{uuid.uuid4().hex[:8]}"  # its metrics alone in the session's CloudWatch
    databases = json.dumps([{"name": name, "url": _url(sample_db)}])
    done = _task(
        {
            "DBOPS_BUCKET": bucket,
            "DBOPS_DATABASES": databases,
            "DBOPS_BACKUP_DATABASE": name,
            "DBOPS_BACKUP_KIND": "predeploy",
        }
    )

    assert done.returncode == 0, done.stderr
    [entry] = catalog.list_backups(bucket)
    on_fargate = entry.manifest
    assert (on_fargate.database, on_fargate.kind) == (name, "predeploy")
    assert on_fargate.schema_sql is not None and on_fargate.tables
    assert f"backed up {name} (predeploy): backup {on_fargate.id}" in done.stdout
    # sent with PutMetricData (CloudWatch does not read a task's logs as EMF), not printed
    assert emf_metrics(done.stdout) == []
    metrics = cloudwatch_sums(name)
    assert metrics["BackupSucceeded"] == 1 and "BackupFailed" not in metrics
    assert metrics["BackupBytes"] == float(on_fargate.dump.size)
    assert _url(sample_db) not in done.stdout + done.stderr

    # the same database backed up by the Lambda handler: the same manifest, field for field
    monkeypatch.setenv("DBOPS_BUCKET", bucket)
    monkeypatch.setenv("DBOPS_DATABASES", databases)
    result = handler({"kind": "predeploy", "database": name}, LocalLambdaContext())
    capsys.readouterr()
    in_lambda = catalog.load_backup(bucket, "predeploy", name, result["results"][0]["backup_id"]).manifest
    assert in_lambda.model_dump().keys() == on_fargate.model_dump().keys()
    assert in_lambda.format_version == on_fargate.format_version == catalog.IDENTITY_FORMAT
    assert [(t.qualified, t.rows, t.indexes, t.constraints) for t in in_lambda.tables] == [
        (t.qualified, t.rows, t.indexes, t.constraints) for t in on_fargate.tables
    ]


def test_a_task_that_cannot_reach_the_server_exits_3_in_one_line_and_writes_nothing(bucket: str) -> None:
    name = f"app_{uuid.uuid4().hex[:8]}"
    done = _task(
        {
            "DBOPS_BUCKET": bucket,
            "DBOPS_DATABASES": json.dumps([{"name": name, "url": f"postgresql://u:pw-x@127.0.0.1:{free_port()}/d"}]),
            "DBOPS_BACKUP_DATABASE": name,
            "DBOPS_BACKUP_KIND": "nightly",
        }
    )

    assert done.returncode == EXIT_COULD_NOT_RUN == 3, done.stderr
    assert done.stderr.splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith(f"dbops backup task: error: {name}: ") and "cannot connect to d on " in done.stderr
    assert "pw-x" not in done.stdout + done.stderr
    assert cloudwatch_sums(name) == {"BackupFailed": 1}
    assert catalog.list_backups(bucket) == []


def test_a_backup_that_fails_exits_1_naming_its_first_cause(sample_db: ConnectionSpec, bucket: str) -> None:
    """The task's login cannot read one table: the backup runs and fails, exit 1, its first cause on stderr."""
    name = f"app_{uuid.uuid4().hex[:8]}"
    with limited_login(sample_db, "report_snapshots") as url:
        done = _task(
            {
                "DBOPS_BUCKET": bucket,
                "DBOPS_DATABASES": json.dumps([{"name": name, "url": url}]),
                "DBOPS_BACKUP_DATABASE": name,
                "DBOPS_BACKUP_KIND": "nightly",
            }
        )

    assert done.returncode == EXIT_FAILURE == 1, done.stderr
    assert done.stderr.splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith(f"dbops backup task: error: {name}: ")
    assert "permission denied for table report_snapshots" in done.stderr
    assert cloudwatch_sums(name) == {"BackupFailed": 1}
    assert catalog.list_backups(bucket) == []


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DBOPS_BACKUP_KIND": "nightly"}, "DBOPS_BACKUP_DATABASE is not set"),
        ({"DBOPS_BACKUP_DATABASE": "app", "DBOPS_BACKUP_KIND": "prerestore"}, "DBOPS_BACKUP_KIND is 'prerestore'"),
        ({"DBOPS_BACKUP_DATABASE": "billing", "DBOPS_BACKUP_KIND": "nightly"}, "unknown database 'billing'"),
        ({"DBOPS_BACKUP_DATABASE": "app", "DBOPS_BACKUP_KIND": "nightly", "DBOPS_DATABASES": "[]"}, "databases: "),
    ],
)
def test_a_bad_task_request_is_one_line_and_exit_2(bucket: str, env: dict[str, str], message: str) -> None:
    base = {"DBOPS_BUCKET": bucket, "DBOPS_DATABASES": json.dumps([{"name": "app", "url": "postgresql://u:pw@h/d"}])}
    cleared = {k: v for k, v in os.environ.items() if not k.startswith("DBOPS_BACKUP_")}
    done = subprocess.run(
        [sys.executable, "-m", "handlers.backup_task"],
        env={**cleared, **base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == EXIT_USAGE == 2, done.stderr
    assert done.stderr.splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("dbops backup task: error: ") and message in done.stderr
    assert catalog.list_backups(bucket) == []


def test_the_plan_follows_the_configuration_then_the_last_committed_backup(
    sample_db: ConnectionSpec, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DBOPS_BUCKET", bucket)
    monkeypatch.setenv(
        "DBOPS_DATABASES",
        json.dumps(
            [
                {"name": "app", "url": _url(sample_db)},
                {"name": "big", "url": _url(sample_db), "backup_runner": "fargate"},
            ]
        ),
    )

    def plan(database: str) -> dict[str, str]:
        return handler({"kind": "nightly", "database": database, "plan": True}, LocalLambdaContext())

    assert plan("app") == {
        "database": "app",
        "kind": "nightly",
        "runner": "lambda",
        "reason": "no committed backup yet",
    }
    assert plan("big")["runner"] == "fargate"  # configured
    # a real backup of it, then a threshold it is over: the next backup runs on Fargate, saying why
    manifest = run_backup(sample_db, BackupRequest(database="app", bucket=bucket, kind="manual"))
    assert plan("app")["runner"] == "lambda"
    monkeypatch.setenv("DBOPS_BACKUP_FARGATE_RAW_BYTES", str(manifest.dump.raw_size - 1))
    planned = plan("app")
    assert planned["runner"] == "fargate"
    assert planned["reason"].startswith(f"backup {manifest.id} wrote {manifest.dump.raw_size} bytes")
    assert catalog.list_backups(bucket, kind="nightly") == []  # a plan backs nothing up


def test_the_task_sizes_a_parallel_backups_streams_by_its_cpu_units(sample_db: ConnectionSpec, bucket: str) -> None:
    """1,024 CPU units: one COPY stream, whatever the host's CPU count (the stack sets the units from the task
    definition's cpu); the manifest and the "backup committed" line say so."""
    name = f"app_{uuid.uuid4().hex[:8]}"
    database = {"name": name, "url": _url(sample_db), "backup_format": "parallel"}
    env = {"DBOPS_BUCKET": bucket, "DBOPS_DATABASES": json.dumps([database]), "DBOPS_TASK_CPU_UNITS": "1024"}
    done = _task({**env, "DBOPS_BACKUP_DATABASE": name, "DBOPS_BACKUP_KIND": "manual"})

    assert done.returncode == 0, done.stderr
    [entry] = catalog.list_backups(bucket)
    assert (entry.manifest.format, entry.manifest.workers) == ("parallel", 1)
    [committed] = [json.loads(line) for line in done.stdout.splitlines() if '"backup committed"' in line]
    assert committed["workers"] == 1
    reason = "parallel (1 COPY streams at most, Fargate task: 1 vCPUs): configured: parallel"
    assert committed["format_reason"] == reason
