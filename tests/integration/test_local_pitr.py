"""The local stand-in for RDS point-in-time restore is PostgreSQL's own point-in-time recovery.

One archiving server per PostgreSQL version (its WAL archived into a directory, a base backup taken), one short
history on it (rows inserted, then deleted more than a second later), and recoveries to moments of that history:
directly (WalArchive.recover_to) and through moto's RDS API over HTTP (restore_db_instance_to_point_in_time).
"""

from __future__ import annotations

import math
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from botocore.exceptions import ClientError

from dbops import aws
from local_stack import rds
from local_stack.aws import LocalAws
from local_stack.pitr import RecoveryFailed, WalArchive
from local_stack.postgres import LocalPostgres
from tests.support import server_bin_dir, server_params

UNRELATED = [(1, "alpha"), (2, "beta"), (3, "gamma")]


@dataclass
class History:
    server: LocalPostgres
    archive: WalArchive
    bin_dir: Path
    version: str
    before_insert: datetime  # after the base backup and the unrelated table's rows, before the insert
    inserted_at: datetime  # just after the insert committed
    deleted_at: datetime  # now() of the deleting transaction: before its commit


def _rows(url: str, table: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, connect_timeout=5) as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()  # noqa: S608 (a fixed test table)


def _server_time(conn: psycopg.Connection[Any]) -> datetime:
    row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    return row[0].astimezone(UTC)


@pytest.fixture(scope="module", params=server_params())
def history(request: pytest.FixtureRequest) -> Iterator[History]:
    """An archiving server with a base backup, then: the unrelated table's rows, the insert of two rows into
    `events` and, 1.1 s later, their delete; the WAL flushed into the archive."""
    bin_dir = server_bin_dir(request.param)
    archive = WalArchive(Path(tempfile.mkdtemp(prefix="dbops-wal-")))
    server = LocalPostgres(bin_dir, settings=archive.server_settings())
    try:
        server.start()
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute("CREATE TABLE unrelated (id int PRIMARY KEY, name text)")
            conn.execute("CREATE TABLE events (id int PRIMARY KEY, what text)")
        archive.take_base_backup(server)
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.cursor().executemany("INSERT INTO unrelated VALUES (%s, %s)", UNRELATED)  # replayed from the archive
            before_insert = _server_time(conn)
            conn.execute("INSERT INTO events VALUES (1, 'signup'), (2, 'login')")
            inserted_at = _server_time(conn)
            time.sleep(1.1)
            with conn.transaction():
                row = conn.execute("DELETE FROM events RETURNING now()").fetchone()
            assert row is not None
            deleted_at = row[0].astimezone(UTC)
        archive.flush(server)
        yield History(server, archive, bin_dir, request.param, before_insert, inserted_at, deleted_at)
    finally:
        server.destroy()
        shutil.rmtree(archive.root, ignore_errors=True)


def _postmasters() -> dict[int, Path]:
    """Every running postmaster (`postgres -D <data folder> ...`) on this machine, by pid."""
    found = {}
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if argv and argv[0].endswith("/postgres") and "-D" in argv[:-1]:
            found[int(cmdline.parent.name)] = Path(argv[argv.index("-D") + 1])
    return found


def _assert_nothing_left(archive: WalArchive) -> None:
    assert archive.recovered_data_dirs() == []
    orphans = {pid: path for pid, path in _postmasters().items() if not path.exists()}
    assert orphans == {}, f"postmasters running on removed data folders: {orphans}"


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


# WalArchive.recover_to: PostgreSQL's recovery, directly.


def test_recovery_between_insert_and_delete_has_the_rows(history: History) -> None:
    moment = history.inserted_at + (history.deleted_at - history.inserted_at) / 2
    restored = history.archive.recover_to(moment, bin_dir=history.bin_dir)
    try:
        assert restored.port != history.server.port
        assert restored.password == history.server.password  # the same cluster: the same roles and password
        assert _rows(restored.url(), "events") == [(1, "signup"), (2, "login")]
        assert _rows(restored.url(), "unrelated") == UNRELATED == _rows(history.server.url(), "unrelated")
        assert _rows(history.server.url(), "events") == []  # the source is untouched
        with psycopg.connect(restored.url(), autocommit=True) as conn:  # promoted: a primary that takes writes
            conn.execute("INSERT INTO events VALUES (3, 'after the restore')")
    finally:
        restored.destroy()
    assert not restored.base_dir.exists()
    assert not _accepts_connections(restored.port)


def test_recovery_before_the_insert_lacks_the_rows(history: History) -> None:
    restored = history.archive.recover_to(history.before_insert, bin_dir=history.bin_dir)
    try:
        assert _rows(restored.url(), "events") == []
        assert _rows(restored.url(), "unrelated") == UNRELATED  # committed after the base backup: from the WAL
    finally:
        restored.destroy()


def test_a_target_before_the_base_backup_is_refused(history: History) -> None:
    target = history.archive.base_backup_time - timedelta(seconds=30)
    with pytest.raises(RecoveryFailed, match="before the base backup"):
        history.archive.recover_to(target, bin_dir=history.bin_dir)
    _assert_nothing_left(history.archive)


def test_a_target_past_the_archived_wal_is_refused_by_postgresql(history: History) -> None:
    with psycopg.connect(history.server.url(), autocommit=True) as conn:
        conn.execute("SELECT pg_current_xact_id()")  # a commit after the last flush, not archived yet
        unarchived = _server_time(conn)
    assert history.archive.last_flush_time is not None and unarchived > history.archive.last_flush_time
    for target in (unarchived, datetime.now(UTC) + timedelta(hours=1)):
        with pytest.raises(RecoveryFailed, match="recovery ended before configured recovery target") as failed:
            history.archive.recover_to(target, bin_dir=history.bin_dir)
        assert failed.value.server_log_line is not None and "FATAL" in failed.value.server_log_line
        _assert_nothing_left(history.archive)


# restore_db_instance_to_point_in_time through moto's RDS API over HTTP.


@pytest.fixture(scope="module")
def source_instance(history: History, local_aws: LocalAws) -> Iterator[str]:
    identifier = f"pitr-source-{history.version}"
    rds.create_local_instance(identifier, history.server, history.archive)
    yield identifier
    rds.stop_all()
    aws.client("rds").delete_db_instance(DBInstanceIdentifier=identifier, SkipFinalSnapshot=True)


def _wait_status(identifier: str, *, leaving: str = "creating", timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        [instance] = aws.client("rds").describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"]
        if instance["DBInstanceStatus"] != leaving or time.monotonic() > deadline:
            return instance
        time.sleep(0.2)


def test_rds_point_in_time_restore_is_a_real_recovery(history: History, source_instance: str) -> None:
    client = aws.client("rds")
    [source] = client.describe_db_instances(DBInstanceIdentifier=source_instance)["DBInstances"]
    assert source["Endpoint"] == {"Address": "127.0.0.1", "Port": history.server.port}
    assert source["InstanceCreateTime"] <= history.archive.base_backup_time
    assert source["LatestRestorableTime"] >= history.deleted_at
    restore_time = datetime.fromtimestamp(math.ceil(history.inserted_at.timestamp()), UTC)  # a whole second
    assert history.inserted_at < restore_time < history.deleted_at

    target = f"pitr-target-{history.version}"
    created = client.restore_db_instance_to_point_in_time(
        SourceDBInstanceIdentifier=source_instance,
        TargetDBInstanceIdentifier=target,
        RestoreTime=restore_time,
        Tags=[{"Key": "purpose", "Value": "pitr-test"}],
    )["DBInstance"]
    assert created["DBInstanceStatus"] == "creating"
    assert "Endpoint" not in created

    instance = _wait_status(target)
    assert instance["DBInstanceStatus"] == "available", rds.restore_error(target)
    address, port = instance["Endpoint"]["Address"], instance["Endpoint"]["Port"]
    assert (address, instance["MasterUsername"]) == ("127.0.0.1", history.server.user)
    url = f"postgresql://{history.server.user}:{history.server.password}@{address}:{port}/postgres"
    assert _rows(url, "events") == [(1, "signup"), (2, "login")]  # as at that second
    assert _rows(url, "unrelated") == UNRELATED
    assert client.list_tags_for_resource(ResourceName=instance["DBInstanceArn"])["TagList"] == [
        {"Key": "purpose", "Value": "pitr-test"}
    ]
    [data_dir] = [path for path in history.archive.recovered_data_dirs() if path in _postmasters().values()]

    client.delete_db_instance(DBInstanceIdentifier=target, SkipFinalSnapshot=True)
    assert not _accepts_connections(port)
    assert not data_dir.exists()
    _assert_nothing_left(history.archive)


def test_rds_restore_to_the_latest_restorable_time(history: History, source_instance: str) -> None:
    client = aws.client("rds")
    with psycopg.connect(history.server.url(), autocommit=True) as conn:
        conn.execute("INSERT INTO unrelated VALUES (4, 'latest')")  # not flushed: the restore flushes first
    target = f"pitr-latest-{history.version}"
    client.restore_db_instance_to_point_in_time(
        SourceDBInstanceIdentifier=source_instance, TargetDBInstanceIdentifier=target, UseLatestRestorableTime=True
    )
    instance = _wait_status(target)
    try:
        assert instance["DBInstanceStatus"] == "available", rds.restore_error(target)
        url = f"postgresql://postgres:{history.server.password}@127.0.0.1:{instance['Endpoint']['Port']}/postgres"
        assert _rows(url, "unrelated") == [*UNRELATED, (4, "latest")]
        assert _rows(url, "events") == []
    finally:
        client.delete_db_instance(DBInstanceIdentifier=target, SkipFinalSnapshot=True)
        with psycopg.connect(history.server.url(), autocommit=True) as conn:
            conn.execute("DELETE FROM unrelated WHERE id = 4")
    _assert_nothing_left(history.archive)


def test_rds_refuses_times_outside_the_window(history: History, source_instance: str) -> None:
    client = aws.client("rds")
    for restore_time in (history.archive.base_backup_time - timedelta(minutes=1), datetime.now(UTC) + timedelta(1)):
        with pytest.raises(ClientError) as refused:
            client.restore_db_instance_to_point_in_time(
                SourceDBInstanceIdentifier=source_instance,
                TargetDBInstanceIdentifier="pitr-out",
                RestoreTime=restore_time,
            )
        assert refused.value.response["Error"]["Code"] == "InvalidParameterValue"
        assert "outside the restorable window" in refused.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as refused:
        client.restore_db_instance_to_point_in_time(
            SourceDBInstanceIdentifier=source_instance,
            TargetDBInstanceIdentifier="pitr-out",
            RestoreTime=history.inserted_at,
            UseLatestRestorableTime=True,
        )
    assert refused.value.response["Error"]["Code"] == "InvalidParameterCombination"
    assert not client.describe_db_instances(Filters=[{"Name": "db-instance-id", "Values": ["pitr-out"]}])["DBInstances"]


def test_rds_restore_that_postgresql_refuses_is_incompatible_restore(history: History, source_instance: str) -> None:
    """The archive lost the segment the base backup starts in: recovery fails, as it would on a damaged archive."""
    label = (history.archive.base_dir / "backup_label").read_text()
    first = label.split("(file ", 1)[1].split(")", 1)[0]
    segment = history.archive.archive_dir / first
    hidden = segment.with_name(first + ".hidden")
    segment.rename(hidden)
    target = f"pitr-broken-{history.version}"
    try:
        aws.client("rds").restore_db_instance_to_point_in_time(
            SourceDBInstanceIdentifier=source_instance,
            TargetDBInstanceIdentifier=target,
            RestoreTime=history.deleted_at,
        )
        instance = _wait_status(target)
    finally:
        hidden.rename(segment)
    assert instance["DBInstanceStatus"] == "incompatible-restore"
    assert "Endpoint" not in instance
    error = rds.restore_error(target)
    assert error is not None and "PostgreSQL refused it" in error
    assert "FATAL:  could not locate required checkpoint record" in error
    aws.client("rds").delete_db_instance(DBInstanceIdentifier=target, SkipFinalSnapshot=True)
    _assert_nothing_left(history.archive)


def test_rds_delete_during_recovery_leaves_nothing(history: History, source_instance: str) -> None:
    client = aws.client("rds")
    target = f"pitr-hasty-{history.version}"
    client.restore_db_instance_to_point_in_time(
        SourceDBInstanceIdentifier=source_instance, TargetDBInstanceIdentifier=target, RestoreTime=history.deleted_at
    )
    client.delete_db_instance(DBInstanceIdentifier=target, SkipFinalSnapshot=True)  # still "creating"
    _assert_nothing_left(history.archive)
    assert not client.describe_db_instances(Filters=[{"Name": "db-instance-id", "Values": [target]}])["DBInstances"]
