"""Restores as of a moment through the synthesized restore state machine, on the local stand-in for RDS: a real
archiving PostgreSQL (15 and 18) whose point-in-time restores are real recoveries (local_stack.rds).

The history: `events` rows 1 and 2 inserted at T1, deleted at T2 (1.1 s later), row 3 inserted after; `unrelated`
changed after T2 too. A restore of `events` as of a moment between T1 and T2 brings 1 and 2 back (and takes 3
away: the table as it was then) and leaves `unrelated` as it is now; as of a moment before T1, `events` is empty.
Every path leaves no temporary instance and no recovered server: success, a failure in the dump, a wait that
times out, an aborted execution (swept as the EventBridge rule and the daily schedule would).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dbops import aws
from dbops.backup import catalog
from dbops.cli import main
from dbops.contract import PIT_INSTANCE_PREFIX
from dbops.postgres.connection import ConnectionSpec
from dbops.restore import records
from dbops.restore.models import RestoreRequest
from dbops.restore.runner import start_restore
from handlers.restore import sweep_temporary_instances
from local_stack import rds
from local_stack.aws import LocalAws
from local_stack.metrics import emf_to_cloudwatch
from local_stack.pitr import WalArchive
from local_stack.postgres import LocalPostgres
from tests.support import LocalLambdaContext, scheduled_event, server_bin_dir, server_params
from tests.workflow.alarms import metric_totals, tripped


@dataclass
class Source:
    server: LocalPostgres
    archive: WalArchive
    instance: str
    spec: ConnectionSpec
    before_insert: datetime
    inserted_at: datetime
    deleted_at: datetime

    @property
    def between(self) -> datetime:
        return self.inserted_at + (self.deleted_at - self.inserted_at) / 2


def _now(conn: psycopg.Connection[Any]) -> datetime:
    row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    return row[0].astimezone(UTC)


@pytest.fixture(scope="module", params=server_params())
def source(request: pytest.FixtureRequest, local_aws: LocalAws) -> Iterator[Source]:
    bin_dir = server_bin_dir(request.param)
    archive = WalArchive(Path(tempfile.mkdtemp(prefix="dbops-wal-")))
    server = LocalPostgres(bin_dir, settings=archive.server_settings())
    instance = f"app-{request.param}-{uuid.uuid4().hex[:6]}"
    try:
        server.start()
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE app")
        with psycopg.connect(server.url("app"), autocommit=True) as conn:
            conn.execute("CREATE TABLE events (id int PRIMARY KEY, what text NOT NULL)")
            conn.execute("CREATE TABLE unrelated (id int PRIMARY KEY, name text)")
            conn.execute("INSERT INTO unrelated VALUES (1, 'alpha'), (2, 'beta')")
        archive.take_base_backup(server)
        rds.create_local_instance(instance, server, archive)
        with psycopg.connect(server.url("app"), autocommit=True) as conn:
            before_insert = _now(conn)
            time.sleep(0.2)
            conn.execute("INSERT INTO events VALUES (1, 'signup'), (2, 'login')")
            inserted_at = _now(conn)
            time.sleep(1.1)
            conn.execute("DELETE FROM events WHERE id IN (1, 2)")
            deleted_at = _now(conn)
            conn.execute("INSERT INTO events VALUES (3, 'after the incident')")
            conn.execute("INSERT INTO unrelated VALUES (3, 'changed after the incident')")
        yield Source(
            server,
            archive,
            instance,
            ConnectionSpec.from_url(server.url("app")),
            before_insert,
            inserted_at,
            deleted_at,
        )
    finally:
        rds.stop_all()
        try:
            aws.client("rds").delete_db_instance(DBInstanceIdentifier=instance, SkipFinalSnapshot=True)
        except Exception:
            pass
        server.destroy()
        shutil.rmtree(archive.root, ignore_errors=True)


@pytest.fixture
def configured(source: Source, configure: Callable[..., None]) -> Source:
    configure(source.spec, rds_instance_id=source.instance)
    return source


def _rows(spec: ConnectionSpec, table: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(**spec.connect_kwargs()) as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()  # noqa: S608 (fixed test tables)


def _temporary_instances() -> list[str]:
    """Instances and (Aurora) clusters named as temporary copies."""
    rds = aws.client("rds")
    names = [i["DBInstanceIdentifier"] for i in rds.describe_db_instances()["DBInstances"]]
    names += [f"cluster {c['DBClusterIdentifier']}" for c in rds.describe_db_clusters()["DBClusters"]]
    return [n for n in names if n.removeprefix("cluster ").startswith(PIT_INSTANCE_PREFIX)]


def _assert_nothing_left(source: Source) -> None:
    assert _temporary_instances() == []
    assert source.archive.recovered_data_dirs() == []


def test_a_table_as_of_a_moment_between_insert_and_delete_has_its_rows_back_and_nothing_else_changed(
    configured: Source, run_restore: Callable[..., dict[str, Any]], bucket: str
) -> None:
    unrelated = _rows(configured.spec, "unrelated")

    result = run_restore(tables=["events"], as_of=configured.between.isoformat())

    assert result["status"] == "SUCCEEDED", result.get("cause")
    assert _rows(configured.spec, "events") == [(1, "signup"), (2, "login")]  # the table as it was then
    assert _rows(configured.spec, "unrelated") == unrelated  # not chosen: as it is now
    for step in ("RestoreToPointInTime", "WaitForInstance", "DumpPointInTime", "SafetyBackup", "Swap"):
        assert step in result["states"]
    outcome = json.loads(result["output"])["outcome"]
    assert f"as of {configured.between.isoformat()} ({PIT_INSTANCE_PREFIX}" in outcome
    [dump] = [e.manifest for e in catalog.list_backups(bucket, kind="pointintime")]
    assert dump.labels["as_of"] == configured.between.isoformat()
    assert {t.qualified: t.rows for t in dump.tables} == {"public.events": 2, "public.unrelated": 2}
    _assert_nothing_left(configured)


def test_the_whole_database_as_of_a_moment_side_by_side_with_dbops_restore_as_of(
    configured: Source, restore_machine: str, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`dbops restore --as-of` into a new database: the point-in-time copy beside the live one, its time recorded."""
    target = f"app_then_{uuid.uuid4().hex[:6]}"
    moment = configured.between.isoformat(sep=" ")
    live = _rows(configured.spec, "events")

    code = main(["restore", "--as-of", moment, "--target", target, "--state-machine-arn", restore_machine])

    out = capsys.readouterr().out
    assert code == 0, out
    then = configured.spec.for_database(target)
    assert _rows(then, "events") == [(1, "signup"), (2, "login")]
    assert _rows(then, "unrelated") == [(1, "alpha"), (2, "beta")]
    assert _rows(configured.spec, "events") == live  # the live database untouched
    [record] = [r for r in records.load_all(bucket, "restore") if r.target_db == target]
    assert record.ok and record.seconds > 0 and "the whole database" in record.detail
    assert f"succeeded: restored: as of {configured.between.isoformat()}" in out
    _assert_nothing_left(configured)


def test_on_aurora_a_cluster_and_its_instance_are_restored_and_both_deleted(
    source: Source, configure: Callable[..., None], run_restore: Callable[..., dict[str, Any]]
) -> None:
    """The same server as an Aurora cluster: restore_db_cluster_to_point_in_time, then an instance in the copy."""
    cluster = f"aurora-{uuid.uuid4().hex[:6]}"
    rds.create_local_cluster(cluster, source.server, source.archive)
    configure(source.spec, rds_cluster_id=cluster)

    result = run_restore(tables=["events"], as_of=source.between.isoformat())

    assert result["status"] == "SUCCEEDED", result.get("cause")
    assert _rows(source.spec, "events") == [(1, "signup"), (2, "login")]
    outcome = json.loads(result["output"])["outcome"]
    assert f"({PIT_INSTANCE_PREFIX}" in outcome
    _assert_nothing_left(source)


def test_a_copy_half_made_when_its_restore_step_fails_is_deleted(
    source: Source, configure: Callable[..., None], run_restore: Callable[..., dict[str, Any]]
) -> None:
    """The fault, from RDS itself: an Aurora Serverless v1 cluster is restored, then refuses the instance the step
    adds to it. RestoreToPointInTime fails with the cluster made; Rollback deletes it."""
    cluster = f"serverless-{uuid.uuid4().hex[:6]}"
    rds.create_local_cluster(cluster, source.server, source.archive, engine_mode="serverless")
    configure(source.spec, rds_cluster_id=cluster)
    events = _rows(source.spec, "events")

    result = run_restore(tables=["events"], as_of=source.between.isoformat())

    assert result["status"] == "FAILED"
    assert "Rollback" in result["states"] and "WaitForInstance" not in result["states"]
    assert "Instances cannot be added to Aurora Serverless clusters" in result["cause"]
    assert _rows(source.spec, "events") == events
    _assert_nothing_left(source)


def test_a_database_backed_up_on_fargate_has_its_copy_dumped_by_the_fargate_task(
    source: Source, configure: Callable[..., None], run_restore: Callable[..., dict[str, Any]], bucket: str
) -> None:
    """backup_runner fargate: the copy is dumped by `python -m handlers.restore_task` (DBOPS_RESTORE_STEP
    dump_point_in_time, run here as the task's process); DumpPointInTime then finds that dump, deletes the copy."""
    configure(source.spec, rds_instance_id=source.instance, backup_runner="fargate")

    result = run_restore(tables=["events"], as_of=source.between.isoformat())

    assert result["status"] == "SUCCEEDED", result.get("cause")
    states = result["states"]
    assert states.index("DumpOnFargate") < states.index("DumpPointInTime") < states.index("Swap")
    assert _rows(source.spec, "events") == [(1, "signup"), (2, "login")]
    [dump] = [e.manifest for e in catalog.list_backups(bucket, kind="pointintime")]  # written once, by the task
    assert dump.labels["instance"].startswith(PIT_INSTANCE_PREFIX)
    _assert_nothing_left(source)


def test_as_of_a_moment_before_the_insert_the_rows_are_not_there(
    configured: Source, run_restore: Callable[..., dict[str, Any]]
) -> None:
    result = run_restore(tables=["events"], as_of=(configured.before_insert).isoformat())

    assert result["status"] == "SUCCEEDED", result.get("cause")
    assert _rows(configured.spec, "events") == []
    _assert_nothing_left(configured)


def test_a_table_name_the_target_does_not_have_is_refused_before_anything_starts(
    configured: Source, run_restore: Callable[..., dict[str, Any]]
) -> None:
    result = run_restore(tables=["evnts"], as_of=configured.between.isoformat())

    assert (result["status"], result["states"][-1]) == ("SUCCEEDED", "RestoreRefused")
    assert (
        "'evnts' is not a table in database app; did you mean public.events?" in json.loads(result["output"])["reason"]
    )
    assert "RestoreToPointInTime" not in result["states"]
    _assert_nothing_left(configured)


@pytest.mark.parametrize("outside", ["future", "before_base_backup"])
def test_a_moment_outside_the_window_is_refused_before_anything_starts(
    configured: Source, run_restore: Callable[..., dict[str, Any]], outside: str
) -> None:
    as_of = (
        datetime.now(UTC) + timedelta(hours=1)
        if outside == "future"
        else configured.archive.base_backup_time - timedelta(minutes=5)
    )
    events = _rows(configured.spec, "events")

    since = datetime.now(UTC)
    counted = metric_totals("sprint_reports_v2", "RestoreRefused")
    with emf_to_cloudwatch():
        result = run_restore(tables=["events"], as_of=as_of.isoformat())

    assert (result["status"], result["states"][-1]) == ("SUCCEEDED", "RestoreRefused")  # refused is not failed
    reason = json.loads(result["output"])["reason"]
    assert "is outside the restorable window of RDS instance" in reason
    assert configured.archive.base_backup_time.isoformat(timespec="seconds")[:16] in reason
    assert tripped(result, "Restore", ["sprint_reports_v2"], since) == []  # no alarm of the synthesized stack
    assert metric_totals("sprint_reports_v2", "RestoreRefused")["RestoreRefused"] == counted["RestoreRefused"] + 1
    assert "RestoreToPointInTime" not in result["states"]
    assert _rows(configured.spec, "events") == events
    _assert_nothing_left(configured)


def test_a_failed_dump_deletes_the_temporary_instance_and_changes_nothing(
    configured: Source,
    run_restore: Callable[..., dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The fault: no pg_dump where the functions look for it (an empty DBOPS_PG_BIN)."""
    events = _rows(configured.spec, "events")
    monkeypatch.setenv("DBOPS_PG_BIN", str(tmp_path))

    result = run_restore(tables=["events"], as_of=configured.between.isoformat())

    assert result["status"] == "FAILED"
    assert "DumpPointInTime" in result["states"] and "Rollback" in result["states"]
    assert "pg_dump" in result["cause"]
    assert _rows(configured.spec, "events") == events
    _assert_nothing_left(configured)


def test_a_failed_check_after_the_dump_rolls_back_with_no_instance_left(
    source: Source, configure: Callable[..., None], run_restore: Callable[..., dict[str, Any]]
) -> None:
    """The fault: an operator's restore check that the staged copy fails."""
    configure(source.spec, rds_instance_id=source.instance, restore_checks=["SELECT count(*) > 100 FROM events"])
    events = _rows(source.spec, "events")

    result = run_restore(tables=["events"], as_of=source.between.isoformat())

    assert result["status"] == "FAILED"
    assert "Check" in result["states"] and "Rollback" in result["states"] and "Swap" not in result["states"]
    assert "custom check" in result["cause"]
    assert _rows(source.spec, "events") == events
    _assert_nothing_left(source)


def test_a_wait_that_times_out_deletes_the_instance_still_being_created(
    configured: Source, run_restore: Callable[..., dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DBOPS_POINT_IN_TIME_WAIT_MINUTES", "0.03")  # about 2 s
    with rds.slow_restores():
        result = run_restore(tables=["events"], as_of=configured.between.isoformat())

    assert result["status"] == "FAILED"
    assert result["states"].count("WaitForInstance") >= 2
    assert "is not available after" in result["cause"]
    _assert_nothing_left(configured)


def _wait_for_state(execution: str, state: str, times: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        events = aws.client("stepfunctions").get_execution_history(executionArn=execution, maxResults=1000)["events"]
        entered = [e for e in events if e.get("stateEnteredEventDetails", {}).get("name") == state]
        if len(entered) >= times:
            return
        time.sleep(0.2)
    raise AssertionError(f"{execution} never entered {state} {times} times")


@pytest.mark.parametrize("swept_by", ["execution_ended_event", "daily_schedule"])
def test_an_aborted_execution_leaves_an_instance_the_sweep_deletes(
    configured: Source, restore_machine: str, swept_by: str
) -> None:
    sfn = aws.client("stepfunctions")
    with rds.slow_restores():
        request = RestoreRequest(tables=["events"], as_of=configured.between)
        execution = start_restore(restore_machine, request)
        _wait_for_state(execution, "WaitForInstance", 2)
        sfn.stop_execution(executionArn=execution, error="Aborted", cause="operator")
        [left] = _temporary_instances()  # Rollback never ran: the instance is still there
        tags = aws.client("rds").describe_db_instances(DBInstanceIdentifier=left)["DBInstances"][0]["TagList"]
        assert {"Key": "dbops:execution", "Value": execution} in tags

        if swept_by == "execution_ended_event":  # as the EventBridge rule on the restore state machine sends it
            event = {
                "version": "0",
                "id": str(uuid.uuid4()),
                "detail-type": "Step Functions Execution Status Change",
                "source": "aws.states",
                "detail": {"executionArn": execution, "stateMachineArn": restore_machine, "status": "ABORTED"},
            }
        else:
            event = scheduled_event("dbops-temporary-instances")
        result = sweep_temporary_instances(event, LocalLambdaContext())

    assert result == {"deleted": [left]}
    _assert_nothing_left(configured)
    assert sweep_temporary_instances(scheduled_event("dbops-temporary-instances"), LocalLambdaContext()) == {
        "deleted": []
    }
