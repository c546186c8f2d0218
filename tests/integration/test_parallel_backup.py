"""The parallel backup format on pgbench data: one consistent snapshot while pgbench writes, every object in the
catalog, verification and retention; faults injected for real (a worker's backend terminated, S3 cut, the server
killed) leave no manifest and no open upload, and the error names the table and range that failed."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from psycopg import sql

from dbops import aws
from dbops.backup import catalog
from dbops.backup.parallel.run import run_parallel_backup
from dbops.backup.retention import release_for_expiry
from dbops.backup.run import BackupRequest
from dbops.backup.verify import verify_entry
from dbops.cli import main
from dbops.contract import CLASS_TAG, EXPIRABLE_TAG
from dbops.errors import BackupError
from dbops.postgres.connection import ConnectionSpec, connect
from dbops.text import human_bytes
from handlers.backup import handler
from local_stack.aws import LocalAws
from local_stack.postgres import LocalPostgres
from tests.support import LocalLambdaContext, s3_outage

PGBENCH = Path("/usr/lib/postgresql/15/bin/pgbench")
MB = 1024 * 1024
pytestmark = pytest.mark.skipif(not PGBENCH.exists(), reason="pgbench (postgresql-15) is not installed")


def _pgbench(spec: ConnectionSpec, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(PGBENCH), *args], env=spec.libpq_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _load_pgbench(admin: ConnectionSpec, scale: int) -> ConnectionSpec:
    name = f"pgbench_{uuid.uuid4().hex[:8]}"
    with connect(admin) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    spec = admin.for_database(name)
    init = _pgbench(spec, "-i", "-q", "-s", str(scale))
    _, err = init.communicate()
    assert init.returncode == 0, err.decode()
    return spec


@pytest.fixture(scope="module")
def bench_db(pg: LocalPostgres) -> Iterator[ConnectionSpec]:
    admin = ConnectionSpec.from_url(pg.url())
    spec = _load_pgbench(admin, 2)
    yield spec
    with connect(admin) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {spec.dbname} WITH (FORCE)")


def _balances(spec: ConnectionSpec) -> list[int]:
    """The sums pgbench keeps equal in every transaction: accounts', branches' and tellers' balances."""
    sums = [("abalance", "pgbench_accounts"), ("bbalance", "pgbench_branches"), ("tbalance", "pgbench_tellers")]
    with connect(spec) as conn:
        query = sql.SQL("SELECT sum({}) FROM {}")
        return [int(conn.execute(query.format(sql.Identifier(c), sql.Identifier(t))).fetchone()[0]) for c, t in sums]  # type: ignore[index]


def _assert_nothing_committed(bucket: str) -> None:
    s3 = aws.client("s3")
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0, "no object may remain"
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == [], "multipart uploads aborted"


def test_backup_while_pgbench_writes_is_one_consistent_snapshot(
    bench_db: ConnectionSpec, bucket: str, pg: LocalPostgres, capsys: pytest.CaptureFixture[str]
) -> None:
    writers = _pgbench(bench_db, "-n", "-c", "2", "-T", "5")
    time.sleep(1)  # pgbench is writing
    manifest = run_parallel_backup(
        bench_db, BackupRequest(database="bench", bucket=bucket), workers=2, range_bytes=2 * MB
    )
    _, err = writers.communicate()
    assert writers.returncode == 0, err.decode()
    accounts = [o for o in manifest.data if o.table == "pgbench_accounts"]
    assert len(accounts) > 4 and accounts[0].first_page is None and accounts[-1].end_page is None
    assert sum(o.rows for o in accounts) == 200_000
    assert {t.name: t.rows for t in manifest.tables}["pgbench_accounts"] == 200_000

    entry = catalog.find_backup(bucket, "latest", database="bench")
    assert entry.manifest.format == "parallel" and len(entry.manifest.data) == len(manifest.data)
    verify_entry(bucket, entry)
    release_for_expiry(bucket, "nightly", "bench", keep=1)
    for key in s3_keys(bucket, manifest.prefix):
        tags = {t["Key"]: t["Value"] for t in aws.client("s3").get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}
        assert tags == {EXPIRABLE_TAG: "false", CLASS_TAG: "nightly"}

    target = f"{bench_db.dbname}_copy"
    capsys.readouterr()
    main(["export", manifest.id, "--into", target, "--bucket", bucket, "--database-url", pg.url()])
    # progress: the schema archive's and every data object's bytes, up to their sum in the manifest
    total = human_bytes(manifest.dump.raw_size + sum(o.raw_size for o in manifest.data))
    assert f"  restore: {total} of {total}, " in capsys.readouterr().err
    restored = bench_db.for_database(target)
    sums = _balances(restored)
    assert sums[0] == sums[1] == sums[2], f"accounts, branches, tellers: {sums}"
    with connect(ConnectionSpec.from_url(pg.url())) as conn:
        conn.execute(f"DROP DATABASE {target} WITH (FORCE)")


def s3_keys(bucket: str, prefix: str) -> list[str]:
    return [o["Key"] for o in aws.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]


def test_backup_function_runs_the_configured_parallel_format(
    bench_db: ConnectionSpec, pg: LocalPostgres, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DBOPS_BUCKET", bucket)
    config = {"name": "bench", "url": pg.url(bench_db.dbname), "backup_format": "parallel"}
    monkeypatch.setenv("DBOPS_DATABASES", json.dumps([config]))
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "3538")  # two vCPUs
    result = handler({"kind": "manual", "database": "bench"}, LocalLambdaContext())
    entry = catalog.find_backup(bucket, "latest", database="bench")
    assert entry.manifest.format == "parallel" and entry.manifest.workers == 2
    assert entry.verified, result


class WhenCopying:
    """Once a COPY session is busy, act on it (its pid and application_name); on every one seen until the block
    ends with `every`. The block starts once it is watching."""

    def __init__(self, spec: ConnectionSpec, act: Callable[[int, str], None], *, every: bool = False) -> None:
        self.spec, self.act, self.every = spec, act, every
        self.failed: Exception | None = None
        self.watching, self.stop = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> WhenCopying:
        self.thread.start()
        self.watching.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        if self.failed is not None:  # the watcher's own error, not "DID NOT RAISE" for a fault never injected
            raise self.failed

    def _watch(self) -> None:
        try:
            self._look()
        except Exception as exc:
            self.failed = exc
            self.watching.set()

    def _look(self) -> None:
        with connect(self.spec, autocommit=True) as conn:
            self.watching.set()
            while not self.stop.is_set():
                row = conn.execute(
                    "SELECT pid, application_name FROM pg_stat_activity WHERE application_name LIKE 'dbops-copy %' "
                    "AND state = 'active' AND query LIKE 'COPY%' AND backend_type = 'client backend' "
                    "ORDER BY backend_start LIMIT 1"
                ).fetchone()
                if row:
                    self.act(int(row[0]), str(row[1]))
                    if not self.every:
                        return
                time.sleep(0.001)


def _failing_backup(spec: ConnectionSpec, bucket: str, range_bytes: int = MB) -> str:
    with pytest.raises(BackupError) as info:
        run_parallel_backup(spec, BackupRequest(database="bench", bucket=bucket), workers=2, range_bytes=range_bytes)
    return str(info.value)


def test_a_worker_backend_terminated(bench_db: ConnectionSpec, bucket: str) -> None:
    hit: list[str] = []

    def terminate(pid: int, application: str) -> None:
        with connect(bench_db, autocommit=True) as conn:
            oid = int(application.split()[1].split(".")[0])
            hit.append(str(conn.execute("SELECT %s::regclass::text", [oid]).fetchone()[0]))  # type: ignore[index]
            conn.execute("SELECT pg_terminate_backend(%s)", [pid])

    # pgbench_accounts whole in one COPY (a few hundred ms), and every COPY session seen terminated: a COPY that
    # had just ended when its session was terminated is no failure
    with WhenCopying(bench_db, terminate, every=True):
        message = _failing_backup(bench_db, bucket, 64 * MB)
    assert hit, "a COPY session was terminated"
    assert any(f"copy of table public.{name}" in message for name in hit), message
    # psql's own account: the FATAL it read, or (when the socket closed first) the lost connection
    assert "administrator command" in message or "connection to server was lost" in message, message
    _assert_nothing_committed(bucket)


def test_s3_cut_mid_backup(bench_db: ConnectionSpec, local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = f"dbops-fault-{uuid.uuid4().hex[:10]}"
    aws.client("s3").create_bucket(Bucket=bucket)
    with s3_outage(local_aws.port, monkeypatch, ("AbortMultipartUpload", "ListMultipartUploads")) as (proxy, cleanup):
        with WhenCopying(bench_db, lambda pid, app: proxy.cut()):
            message = _failing_backup(bench_db, bucket)
        # the object S3 failed under is named: a table's range, or the schema archive when the cut came first
        assert f"s3://{bucket}/backups/nightly/bench/" in message, message
        assert "copy of table public.pgbench_" in message or "schema.dump.zst" in message, message
        assert cleanup, "the backup cleaned up after itself"
    _assert_nothing_committed(bucket)


def test_server_killed_mid_backup(pg: LocalPostgres, bucket: str) -> None:
    server = LocalPostgres(pg.bin_dir).start()  # its own server: this test kills it
    try:
        spec = _load_pgbench(ConnectionSpec.from_url(server.url()), 2)
        # killed at the first COPY seen running (some 400 of 64 kB ranges: seconds of them); pg_dump's schema
        # archive may still be running then, and the first failure of either is the one reported, named
        with WhenCopying(spec, lambda pid, app: server.kill()):
            message = _failing_backup(spec, bucket, 64 * 1024)
        assert "copy of table public.pgbench_" in message or "pg_dump" in message, message
        assert server.password not in message
        _assert_nothing_committed(bucket)
    finally:
        server.destroy()
