"""`dbops rehearse`, end to end: a real Alembic project (tests/fixtures/alembic_sprint_reports) rehearsed from real
backups in a moto bucket, on real PostgreSQL, through the real CLI in a subprocess.

The Alembic cases run on every server version (`pg`); the timing and process cases on PostgreSQL 18 only (`pg18`),
from a fresh pg_dump of a small sample (--from-database), since they do not depend on the server's version.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from dbops import aws
from dbops.backup import catalog
from dbops.backup.run import BackupRequest, run_backup
from dbops.cli.sample_data import create_sample_data
from dbops.postgres.connection import ConnectionSpec, connect
from dbops.postgres.tools import find_tool
from dbops.rehearsal import RehearsalResult, drop_stale, format_report
from dbops.rehearsal.command import database_url
from dbops.restore.load import restore_size
from dbops.text import human_bytes
from local_stack.aws import LocalAws
from local_stack.fingerprint import table_fingerprints
from local_stack.postgres import LocalPostgres

ALEMBIC_INI = Path(__file__).parents[1] / "fixtures" / "alembic_sprint_reports" / "alembic.ini"
ALEMBIC = [sys.executable, "-m", "alembic", "-c", str(ALEMBIC_INI)]
CATALOG_NAME = "sprint_reports_v2"
HISTORY_SCALE = 0.1
SCRATCH_LIKE = "%\\_\\_rehearse\\_%"


def _alembic(spec: ConnectionSpec, *args: str) -> None:
    subprocess.run([*ALEMBIC, *args], env={**os.environ, "DATABASE_URL": database_url(spec)}, check=True, timeout=60)


def _rehearse(url: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dbops.cli", "rehearse", "--database-url", url, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _result(run: subprocess.CompletedProcess[str]) -> RehearsalResult:
    assert run.stdout.startswith("{"), run.stderr[-3000:]
    return RehearsalResult.model_validate_json(run.stdout)


def _scratch_databases(spec: ConnectionSpec) -> list[str]:
    with connect(spec.for_database("postgres")) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY 1", [SCRATCH_LIKE])
        return [r[0] for r in rows.fetchall()]


def _schema(spec: ConnectionSpec) -> str:
    """pg_dump --schema-only, without the random key pg_dump 18 writes each run."""
    done = subprocess.run(
        [str(find_tool("pg_dump")), "--schema-only", "--no-password"],
        env=spec.libpq_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return "\n".join(line for line in done.stdout.splitlines() if not line.startswith(("\\restrict", "\\unrestrict")))


def _revision(spec: ConnectionSpec) -> str:
    with connect(spec) as conn:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    assert row is not None
    return str(row[0])


@dataclass
class History:
    """Production: the sample at Alembic revision 0003, with a predeploy backup taken at 0001, 0002 and 0003.
    Scale 0.1 (report_snapshots 6,000 rows, 7 MB): rewriting it takes tens of milliseconds, several samples at 5 ms."""

    spec: ConnectionSpec
    url: str
    bucket: str
    backups: dict[str, str]


@pytest.fixture(scope="module")
def history(pg: LocalPostgres, local_aws: LocalAws) -> Iterator[History]:
    admin = ConnectionSpec.from_url(pg.url())
    name = f"prod_{uuid.uuid4().hex[:8]}"
    with connect(admin) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    spec = admin.for_database(name)
    create_sample_data(spec, HISTORY_SCALE)
    bucket = f"dbops-rehearse-{uuid.uuid4().hex[:10]}"
    aws.client("s3").create_bucket(Bucket=bucket)
    backups = {}
    for revision in ("0001", "0002", "0003"):
        _alembic(spec, "upgrade", revision)
        request = BackupRequest(database=CATALOG_NAME, bucket=bucket, kind="predeploy")
        backups[revision] = run_backup(spec, request).id
    yield History(spec, database_url(spec), bucket, backups)
    with connect(admin) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _from(history: History, revision: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Rehearse on the backup taken at `revision`; args: flags, then -- and the command."""
    return _rehearse(
        history.url, "--bucket", history.bucket, "--database-name", CATALOG_NAME, "--backup",
        history.backups[revision], *args,
    )  # fmt: skip


def test_a_table_rewrite_under_access_exclusive_is_flagged_with_its_measured_lock_time(history: History) -> None:
    run = _from(history, "0002", "--interval", "5ms", "--max-lock", "10ms", "--json", "--", *ALEMBIC, "upgrade", "0003")

    result = _result(run)
    assert run.returncode == 1
    [rewrite] = result.rewrites
    assert rewrite.table == "public.report_snapshots" and rewrite.table_rewritten
    assert "public.report_snapshots_created_at_idx" in rewrite.indexes  # rebuilt with the table
    found = [f for f in result.findings if f.table == "public.report_snapshots" and f.phase == "upgrade"]
    assert len(found) == 1, [(f.mode, f.severity, f.statement and f.statement[:40], f.rewritten) for f in found]
    finding = found[0]
    assert (finding.severity, finding.mode, finding.rewritten) == ("fail", "AccessExclusiveLock", True)
    assert finding.statement is not None
    assert finding.statement.startswith("ALTER TABLE report_snapshots ALTER COLUMN created_at TYPE TIMESTAMP(0)")
    assert "rewrote public.report_snapshots" in finding.advice and "backfill" in finding.advice
    # the measured lock covers the whole time the ALTER ran, and the verdict names it
    [statement] = [s for s in result.statements if s.query.startswith("ALTER TABLE report_snapshots")]
    on_table = [h for h in statement.locks if (h.relation.name, h.mode) == ("public.report_snapshots", finding.mode)]
    [hold] = [h for h in on_table if h.relation.storage is None]
    # the rewrite's transient table (and its TOAST) are reported on the table as its new storage, not by OID
    assert any(h.relation.storage and h.relation.storage.startswith("its new storage") for h in on_table), on_table
    assert not [h for h in statement.locks if h.relation.name.startswith("relation ")], statement.locks
    assert finding.lock_s == hold.held_s > 0 and hold.taken_by_statement
    assert hold.held_s + hold.uncertainty_s >= statement.duration_s
    assert any(r.startswith("ACCESS EXCLUSIVE on public.report_snapshots held") for r in result.reasons)
    assert (result.revision_before, result.revision_after_upgrade, result.revision_after_downgrade) == (
        "0002",
        "0003",
        "0002",
    )
    assert result.schema_check.identical is True  # widening the precision back is a clean downgrade
    text = format_report(result)
    assert "ACCESS EXCLUSIVE on public.report_snapshots" in text and "rewritten" in text


def test_a_safe_revision_passes(history: History) -> None:
    run = _from(history, "0001", "--json", "--", *ALEMBIC, "upgrade", "0002")

    result = _result(run)
    assert run.returncode == 0, result.reasons
    assert result.verdict == "pass" and result.reasons == []
    assert [f for f in result.findings if f.severity != "info"] == []
    assert result.rewrites == []
    assert "index public.issues_status_idx" in result.created  # built CONCURRENTLY
    assert result.downgrade_command == [*ALEMBIC, "downgrade", "0001"]
    assert result.schema_check.identical is True
    assert result.scratch_dropped
    # the copy's progress (plain lines: stderr is a pipe): the backup's bytes read, up to the manifest's sum
    total = human_bytes(restore_size(catalog.find_backup(history.bucket, history.backups["0001"]).manifest))
    assert f"  restore: {total} of {total}, " in run.stderr, run.stderr[-2000:]
    assert " MB/s" in run.stderr or " kB/s" in run.stderr


@dataclass
class BadDowngrade:
    run: subprocess.CompletedProcess[str]
    fingerprints: tuple[dict[str, tuple[int, str]], dict[str, tuple[int, str]]]
    schemas: tuple[str, str]
    revisions: tuple[str, str]


@pytest.fixture(scope="module")
def bad_downgrade(history: History) -> BadDowngrade:
    """Revision 0004 (whose downgrade forgets a column) rehearsed on the latest backup, production looked at before
    and after."""
    fingerprints, schema, revision = table_fingerprints(history.spec), _schema(history.spec), _revision(history.spec)
    run = _rehearse(history.url, "--bucket", history.bucket, "--database-name", CATALOG_NAME, "--", *ALEMBIC,
                    "upgrade", "head")  # fmt: skip
    return BadDowngrade(
        run,
        (fingerprints, table_fingerprints(history.spec)),
        (schema, _schema(history.spec)),
        (revision, _revision(history.spec)),
    )


def test_a_downgrade_that_leaves_a_column_behind_is_caught(bad_downgrade: BadDowngrade) -> None:
    run = bad_downgrade.run

    assert run.returncode == 1, run.stdout + run.stderr
    assert "on sprint_reports_v2: FAIL" in run.stdout
    assert "the downgrade left the schema different from before the upgrade" in run.stdout
    assert "the schema different from before the upgrade: changed TABLE public.sprints" in " ".join(run.stdout.split())
    assert "\n  changed TABLE public.sprints\n      + archived_reason text\n" in run.stdout, run.stdout
    assert "archived_at" not in run.stdout.split("Schema after the downgrade")[1]  # that one it did drop


def test_production_data_and_schema_are_unchanged_by_a_rehearsal(bad_downgrade: BadDowngrade) -> None:
    before, after = bad_downgrade.fingerprints
    assert after == before and len(before) == 6  # the sample's 5 tables and alembic_version
    assert bad_downgrade.schemas[1] == bad_downgrade.schemas[0]
    assert bad_downgrade.revisions == ("0003", "0003")
    assert "upgrade 0003 -> 0004" in bad_downgrade.run.stderr  # the upgrade did run: on the scratch copy


# --- timing and process behaviour: PostgreSQL 18, a fresh dump of a small sample ---------------------------------


@pytest.fixture(scope="module")
def small(pg18: LocalPostgres) -> Iterator[ConnectionSpec]:
    admin = ConnectionSpec.from_url(pg18.url())
    name = f"small_{uuid.uuid4().hex[:8]}"
    with connect(admin) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    spec = admin.for_database(name)
    create_sample_data(spec, 0.02)
    yield spec
    with connect(admin) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _script(body: str) -> list[str]:
    """A command: Python running `body`, with psycopg and the scratch database's URL at hand."""
    return [sys.executable, "-c", "import os, sys, time\nimport psycopg\n" + textwrap.dedent(body)]


HOLD_LOCK = """
with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
    conn.execute("LOCK TABLE report_snapshots IN ACCESS EXCLUSIVE MODE")
    t0 = time.monotonic()  # the lock is held from here...
    conn.execute("SELECT pg_sleep(2)")
    conn.commit()
    t1 = time.monotonic()  # ...to here (COMMIT returned)
print(f"held {t1 - t0:.4f}")
"""


def test_a_lock_held_for_a_measured_2s_is_reported_within_the_sampling_interval(small: ConnectionSpec) -> None:
    interval = 0.02
    run = _rehearse(database_url(small), "--from-database", "--no-downgrade", "--json", "--", *_script(HOLD_LOCK))

    result = _result(run)
    # the copy's progress: pg_dump's archive as it grows, against the database's size
    assert "  pg_dump: " in run.stderr and " (database size), " in run.stderr, run.stderr[-2000:]
    measured = float(result.upgrade.output_tail.split()[-1])
    [hold] = [h for s in result.statements for h in s.locks if h.relation.name == "public.report_snapshots"]
    assert hold.mode == "AccessExclusiveLock" and hold.blocking
    # the samples bound the real time: it lies within held ± uncertainty (5 ms for the command's own clock: its
    # t0 comes just after the lock was granted and t1 just after it was released, each a local round trip)
    assert abs(hold.held_s - measured) <= hold.uncertainty_s + 0.005
    # and that bound is the sampling interval: half a gap at each end, so at most 2 intervals even when a gap
    # stretches to twice the interval (a busy 2-core machine), plus the same 5 ms
    assert hold.uncertainty_s <= 2 * interval
    assert abs(hold.held_s - measured) <= 2 * interval + 0.005
    assert 1.9 < measured < 2.5
    assert result.verdict == "pass"  # 2 s is within the default --max-lock 5s
    [finding] = result.findings
    assert finding.severity == "info" and "ACCESS EXCLUSIVE on public.report_snapshots" in finding.what


REWRITES_IN_TWO_TRANSACTIONS = """
with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
    conn.execute("ALTER TABLE issues ADD COLUMN p1 timestamptz DEFAULT clock_timestamp()")
    conn.execute("ALTER TABLE sprints ADD COLUMN p1 timestamptz DEFAULT clock_timestamp()")
    conn.execute("SELECT pg_sleep(0.2)")
    conn.commit()
    conn.execute("SELECT pg_sleep(0.2)")
    conn.execute("ALTER TABLE issues ADD COLUMN p2 timestamptz DEFAULT clock_timestamp()")
    conn.execute("SELECT pg_sleep(0.2)")
    conn.commit()
"""


def test_a_committed_rewrites_storage_replaced_by_a_later_rewrite_is_named_after_its_table(
    small: ConnectionSpec,
) -> None:
    """issues is rewritten in two transactions, the first also rewriting sprints (so its locks cannot tell which
    table a storage is for): the watcher saw the first's storage in pg_class once it committed, and names it."""
    run = _rehearse(
        database_url(small), "--from-database", "--no-downgrade", "--json", "--interval", "10ms", "--",
        *_script(REWRITES_IN_TWO_TRANSACTIONS),
    )  # fmt: skip

    result = _result(run)
    assert result.upgrade.ok, result.upgrade.output_tail
    locks = [h for s in result.statements for h in s.locks]
    assert not [h.relation.name for h in locks if h.relation.name.startswith("relation ")], locks
    earlier = [h for h in locks if h.relation.storage == "its new storage (an earlier rewrite's)"]
    assert earlier and {h.relation.table for h in earlier} == {"public.issues"}, [h.relation for h in locks]
    assert all(not h.blocking for h in earlier)


BLOCK_A_READER = """
import threading
holder = psycopg.connect(os.environ["DATABASE_URL"])
holder.execute("LOCK TABLE issues IN ACCESS EXCLUSIVE MODE")
reader = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
waiting = threading.Thread(target=lambda: reader.execute("SELECT count(*) FROM issues"))
waiting.start()
time.sleep(1)
holder.commit()
waiting.join()
print(holder.info.backend_pid, reader.info.backend_pid)
"""


def test_a_statement_waiting_for_a_lock_is_recorded_with_its_wait_and_its_blocker(small: ConnectionSpec) -> None:
    run = _rehearse(database_url(small), "--from-database", "--no-downgrade", "--json", "--", *_script(BLOCK_A_READER))

    result = _result(run)
    holder, reader = map(int, result.upgrade.output_tail.split())
    [statement] = [s for s in result.statements if s.query == "SELECT count(*) FROM issues"]
    [wait] = statement.waits
    assert (statement.pid, wait.relation.name, wait.mode, wait.blocked_by) == (
        reader,
        "public.issues",
        "AccessShareLock",
        [holder],
    )
    assert 0.8 < wait.waited_s < 1.3  # the holder kept it a second after the reader asked
    [finding] = [f for f in result.findings if f.statement == statement.query]
    assert finding.what.startswith("waited") and "lock_timeout" in finding.advice


SLEEP_IN_SERVER = """
with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
    conn.execute("SELECT pg_sleep(60)")
"""


def test_a_command_past_max_duration_is_stopped_with_its_server_session(small: ConnectionSpec) -> None:
    t0 = time.monotonic()
    run = _rehearse(
        database_url(small), "--from-database", "--max-duration", "1s", "--no-downgrade", "--json", "--",
        *_script(SLEEP_IN_SERVER),
    )  # fmt: skip

    result = _result(run)
    assert run.returncode == 1
    assert result.upgrade.timed_out and result.upgrade.exit_code == -signal.SIGTERM
    assert result.reasons == ["the upgrade ran longer than --max-duration 1.00s and was stopped"]
    assert time.monotonic() - t0 < 20  # not the 60 s the command asked for
    with connect(small.for_database("postgres")) as conn:
        left = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(60)%'").fetchone()
    assert left == (0,)
    assert result.scratch_dropped and _scratch_databases(small) == []


def test_a_killed_rehearsal_leaves_a_scratch_database_the_next_one_drops(small: ConnectionSpec, tmp_path: Path) -> None:
    pid_file = tmp_path / "command.pid"
    body = f"""
    open({str(pid_file)!r}, "w").write(str(os.getpid()))
    time.sleep(60)
    """
    rehearsal = subprocess.Popen(
        [sys.executable, "-m", "dbops.cli", "rehearse", "--database-url", database_url(small), "--from-database",
         "--no-downgrade", "--", *_script(body)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    command_pid = None
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() or not pid_file.read_text():
            assert rehearsal.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        command_pid = int(pid_file.read_text())
        [left] = _scratch_databases(small)
        assert drop_stale(small, timedelta(0)) == []  # alive (its keeper session is there): never swept
        rehearsal.send_signal(signal.SIGKILL)
        rehearsal.wait(timeout=10)
        assert _scratch_databases(small) == [left]
        assert drop_stale(small) == []  # dead, but younger than the default grace (a minute)
    finally:
        rehearsal.kill()
        if command_pid is not None:  # the command of a killed rehearsal runs on in its own group: ours to end
            os.killpg(command_pid, signal.SIGKILL)

    run = _rehearse(
        database_url(small), "--from-database", "--no-downgrade", "--stale-after", "0s", "--json", "--",
        sys.executable, "-c", "pass",
    )  # fmt: skip

    result = _result(run)
    assert run.returncode == 0
    assert result.stale_dropped == [left]
    assert _scratch_databases(small) == []


FAILING_MIGRATION = """
with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
    conn.execute("ALTER TABLE report_snapshots ADD COLUMN title text")
    conn.execute("ALTER TABLE no_such_table ADD COLUMN title text")
"""


def test_a_failed_upgrade_fails_the_rehearsal_with_its_error_and_is_not_rolled_back(small: ConnectionSpec) -> None:
    run = _rehearse(database_url(small), "--from-database", "--downgrade", "true", "--", *_script(FAILING_MIGRATION))

    assert run.returncode == 1
    assert "Why it failed:\n  - the upgrade failed (exit 1)" in run.stdout
    assert 'relation "no_such_table" does not exist' in run.stdout.split("The upgrade's last output:")[1]
    assert "downgrade: not run" in run.stdout


def test_a_failed_downgrade_fails_the_rehearsal(small: ConnectionSpec) -> None:
    run = _rehearse(database_url(small), "--from-database", "--downgrade", "false", "--json", "--", "true")

    result = _result(run)
    assert run.returncode == 1 and result.upgrade.ok
    assert result.reasons == ["the downgrade failed (exit 1)"]
    assert result.schema_check.compared is False


HOLD_LOCK_BRIEFLY = """
with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
    conn.execute("LOCK TABLE report_snapshots IN ACCESS EXCLUSIVE MODE")
    conn.execute("SELECT pg_sleep(0.5)")
"""


def test_the_downgrade_is_watched_and_its_locks_count_against_the_limit(small: ConnectionSpec) -> None:
    downgrade = " ".join(shlex.quote(arg) for arg in _script(HOLD_LOCK_BRIEFLY))
    run = _rehearse(database_url(small), "--from-database", "--max-lock", "200ms", "--downgrade", downgrade, "--json",
                    "--", "true")  # fmt: skip

    result = _result(run)
    assert run.returncode == 1 and result.upgrade.ok and result.downgrade is not None and result.downgrade.ok
    assert result.statements == []  # the upgrade ran no statement
    [hold] = [h for s in result.downgrade_statements for h in s.locks if h.relation.name == "public.report_snapshots"]
    assert hold.mode == "AccessExclusiveLock" and 0.4 < hold.held_s < 0.7
    [finding] = [f for f in result.findings if f.severity == "fail"]
    assert finding.phase == "downgrade" and finding.table == "public.report_snapshots"
    [reason] = result.reasons
    assert reason.startswith("ACCESS EXCLUSIVE on public.report_snapshots held") and "the downgrade's" in reason


VERSIONED_UPGRADE = """
with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
    conn.execute('CREATE SCHEMA IF NOT EXISTS ops')
    conn.execute('CREATE TABLE IF NOT EXISTS ops."Schema_Version" (version_num text)')
    conn.execute('INSERT INTO ops."Schema_Version" VALUES (%s)', [sys.argv[1]])
    conn.execute('ALTER TABLE users ADD COLUMN nickname text')
"""
VERSIONED_DOWNGRADE = """
with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
    conn.execute('ALTER TABLE users DROP COLUMN nickname')
    conn.execute('DELETE FROM ops."Schema_Version"')
"""


def test_a_version_table_in_a_schema_of_its_own_is_read_and_left_out_of_the_comparison(small: ConnectionSpec) -> None:
    # like alembic_version after a downgrade to base, the version table the upgrade made stays behind, empty: the
    # schema comparison leaves exactly that table out (its name in mixed case, in a schema)
    downgrade = " ".join(shlex.quote(arg) for arg in _script(VERSIONED_DOWNGRADE))
    with connect(small) as conn:
        conn.execute("CREATE SCHEMA ops")  # the tool's own schema, in production already
    try:
        run = _rehearse(database_url(small), "--from-database", "--version-table", "ops.Schema_Version",
                        "--downgrade", downgrade, "--json", "--", *_script(VERSIONED_UPGRADE), "42")  # fmt: skip
    finally:
        with connect(small) as conn:
            conn.execute("DROP SCHEMA ops CASCADE")

    result = _result(run)
    revisions = (result.revision_before, result.revision_after_upgrade, result.revision_after_downgrade)
    assert revisions == (None, "42", None)
    assert result.schema_check.identical is True, result.schema_check.changes
    assert run.returncode == 0, result.reasons


SHOW_ENVIRONMENT = """
print(os.environ["DATABASE_URL"])
print(" ".join(sorted(os.environ)))
with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
    print(conn.execute("SELECT current_database()").fetchone()[0])
"""


def test_the_command_gets_the_scratch_url_alone_and_its_output_never_shows_the_password(
    small: ConnectionSpec,
) -> None:
    assert small.password is not None
    password = small.password.get_secret_value()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "dbops.cli",
            "rehearse",
            "--from-database",
            "--no-downgrade",
            "--",
            *_script(SHOW_ENVIRONMENT),
        ],
        env={**os.environ, "DBOPS_DATABASE_URL": database_url(small), "AWS_SECRET_ACCESS_KEY": "ours"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert run.returncode == 0, run.stderr
    url, names, database = run.stderr.split("  | ")[1:4]
    assert "***@" in url and database.strip().startswith(f"{small.dbname}__rehearse_")
    assert "DATABASE_URL" in names.split() and "DBOPS_DATABASE_URL" not in names and "AWS_" not in names
    assert password not in run.stdout + run.stderr


# --- bad input: exit 2, one clear line, nothing created -----------------------------------------------------------

URL = "postgresql://nobody:secret@127.0.0.1:1/sprint_reports_v2"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give the migration command after --"),
        (["--max-lock", "5", "--", "true"], "'5' is not a duration: write it with its unit"),
        (["--max-duration", "0s", "--", "true"], "give a duration longer than zero"),
        (["--from-database", "--backup", "x", "--", "true"], "--from-database rehearses on a fresh dump"),
        (["--url-env", "1BAD", "--", "true"], "dbops: error: --url-env: must match pattern"),
        (["--max-lock", "30ms", "--", "true"], "the lock limit must be at least twice the sampling interval"),
        (["--", "no-such-program-here", "upgrade"], "no-such-program-here: no such program"),
        (["--", "true"], "cannot tell how to roll back `true`"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(args: list[str], message: str) -> None:
    run = _rehearse(URL, "--bucket", "b", *args)

    assert run.returncode == 2
    assert message in run.stderr
    assert "secret" not in run.stderr + run.stdout


def test_no_backup_in_the_bucket_says_so_and_suggests_taking_one(bucket: str) -> None:
    run = _rehearse(URL, "--bucket", bucket, "--", *ALEMBIC, "upgrade", "head")

    assert run.returncode == 2
    assert f"no committed backup (of sprint_reports_v2) in bucket {bucket}" in run.stderr
    assert "dbops backup --kind predeploy" in run.stderr
