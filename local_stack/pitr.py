"""Real point-in-time recovery for the local stack: a WAL archive, a base backup, and recovery into a new server.

This is what RDS does behind `restore_db_instance_to_point_in_time`, done the way PostgreSQL's operations guide
describes it ("Continuous Archiving and Point-in-Time Recovery"): the server copies every finished WAL segment
into an archive directory (archive_command), a base backup (pg_basebackup) is taken once archiving runs, and a
recovery copies the base backup into a fresh data directory, replays archived WAL (restore_command) up to
recovery_target_time and promotes. Nothing is simulated: the restored server is the same cluster (same system
identifier, same roles and password) as it was at the target.

Semantics, as RDS's "the database as it was at that time":

* recovery_target_inclusive = on: every transaction that committed at or before the target is there, none that
  committed after it. A whole-second target therefore means the start of that second (a commit at 12:00:05.300
  is not in a restore to 12:00:05). Times without a timezone are taken as UTC.
* The window starts when the base backup finished (`base_backup_time`). PostgreSQL checks a time target only
  against commit records, so a target before the base backup would silently give the base backup's state:
  `recover_to` refuses it before starting anything.
* The window ends at the last commit in the archive. `flush()` writes a commit record and archives the segment
  holding it, so everything committed before the flush is restorable. A target past the archived WAL makes
  PostgreSQL (13+) refuse: "recovery ended before configured recovery target was reached".

As root, the servers run as the `postgres` system user (see local_stack.postgres): the archive and the base backup
belong to that user, so archive_command, pg_basebackup and restore_command all run as it.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from dbops.errors import ConfigError, DatabaseError, DbopsError
from dbops.postgres.connection import ConnectionSpec, connect
from local_stack.postgres import SERVICE_USER, LocalPostgres, _ensure_service_user

# Characters allowed in the archive's path: it is written, unquoted for PostgreSQL's own quoting, into
# archive_command and restore_command (a shell command line, inside a postgresql.conf string).
_SAFE_PATH = re.compile(r"[A-Za-z0-9_./+-]+")

# FATAL lines a client connection produces while a server starts or stops: never the reason a recovery failed.
_CONNECTION_FATALS = (
    "the database system is starting up",
    "the database system is not yet accepting connections",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "password authentication failed",
)


class RecoveryFailed(DbopsError):
    """A point-in-time recovery did not produce a server; nothing of it is left running or on disk."""

    def __init__(self, message: str, server_log_line: str | None = None) -> None:
        super().__init__(message)
        self.server_log_line = server_log_line


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _pg_timestamp(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%d %H:%M:%S.%f+00")


def _conf_value(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _chown_tree(path: Path, user: pwd.struct_passwd) -> None:
    os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)
    for parent, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(parent, name), user.pw_uid, user.pw_gid, follow_symlinks=False)


def _as_service_user(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool as the user the servers run as (as root: the postgres system user)."""
    if os.geteuid() == 0:
        argv = ["runuser", "-u", SERVICE_USER, "--", *argv]
    return subprocess.run(argv, check=False, capture_output=True, text=True)


def _failure_line(log: Path) -> str | None:
    """The server log's first FATAL or PANIC line that is not a client's connection being turned away."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        if ("FATAL:" in line or "PANIC:" in line) and not any(text in line for text in _CONNECTION_FATALS):
            return line.strip()
    return None


class WalArchive:
    """A local server's WAL archive (a directory, as the operations guide does it: archive_command copies each
    segment there) and the base backup taken when archiving started: what point-in-time recovery needs."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        if not _SAFE_PATH.fullmatch(str(self.root)):
            raise ConfigError(
                f"the WAL archive's directory {self.root} has characters archive_command cannot carry; "
                "use a plain path (letters, digits, _ . / + -), e.g. one from tempfile.mkdtemp()"
            )
        self.archive_dir = self.root / "archive"
        self.base_dir = self.root / "base"
        self.archive_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            user = _ensure_service_user()
            os.chown(self.root, user.pw_uid, user.pw_gid)
            os.chown(self.archive_dir, user.pw_uid, user.pw_gid)
            if _as_service_user(["test", "-w", str(self.archive_dir), "-a", "-x", str(self.root)]).returncode:
                raise ConfigError(
                    f"the {SERVICE_USER} user the servers run as cannot write to {self.archive_dir} "
                    "(a parent directory is not open to it); put the archive under /tmp, e.g. tempfile.mkdtemp()"
                )
        self._base_backup_time: datetime | None = None
        self._last_flush: datetime | None = None
        self._user = "postgres"
        self._password: str | None = None
        self._flush_lock = threading.Lock()

    def server_settings(self) -> dict[str, str]:
        """postgresql.conf settings for the archiving server (LocalPostgres(settings=...)). A segment is copied
        under a temporary name and renamed, so a file in the archive is always whole; an existing one is never
        overwritten (archive_command fails and PostgreSQL retries, as the guide recommends)."""
        archive = self.archive_dir
        return {
            "wal_level": "replica",
            "archive_mode": "on",
            "archive_command": f'test ! -f "{archive}/%f" && cp "%p" "{archive}/%f.part" && mv "{archive}/%f.part" '
            f'"{archive}/%f"',
            "full_page_writes": "on",
            "max_wal_senders": "4",
        }

    def recovered_data_dirs(self) -> list[Path]:
        """Data folders still on disk of servers recovered from this archive (their config restores from it):
        what tests check is gone once a restored instance is deleted."""
        marker = f"restore_command = 'cp \"{self.archive_dir}/"
        found = []
        for conf in Path(tempfile.gettempdir()).glob("dbops-pg-*/data/postgresql.conf"):
            try:
                if marker in conf.read_text():
                    found.append(conf.parent)
            except OSError:
                pass  # removed while we looked
        return found

    def take_base_backup(self, server: LocalPostgres) -> None:
        """pg_basebackup of the running (archiving) server into root/base, plain format, without WAL: a recovery
        fetches every segment from the archive (the server waits until the backup's last segment is archived
        before pg_basebackup returns)."""
        if self._base_backup_time is not None or (self.base_dir.exists() and any(self.base_dir.iterdir())):
            raise ConfigError(f"{self.base_dir} already holds a base backup; one WalArchive takes one")
        done = _as_service_user(
            [
                server.bin("pg_basebackup"),
                "-h",
                str(server.socket_dir),
                "-p",
                str(server.port),
                "-U",
                server.user,
                "-D",
                str(self.base_dir),
                "--format=plain",
                "--wal-method=none",
                "--checkpoint=fast",
                "--no-sync",
            ]
        )
        if done.returncode != 0:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            last = (done.stderr.strip().splitlines() or ["no error output"])[-1]
            raise DatabaseError(f"pg_basebackup of the server on port {server.port} failed: {last}")
        with connect(ConnectionSpec.from_url(server.url())) as conn:
            row = conn.execute("SELECT clock_timestamp()").fetchone()
        assert row is not None
        self._base_backup_time = _utc(row[0])
        self._user = server.user
        self._password = server.password

    @property
    def base_backup_time(self) -> datetime:
        """When the base backup finished (UTC): the earliest moment a recovery can reach."""
        if self._base_backup_time is None:
            raise ConfigError("no base backup yet: call take_base_backup(server) once archiving runs")
        return self._base_backup_time

    @property
    def last_flush_time(self) -> datetime | None:
        """The time the last flush() returned: everything committed before it is in the archive."""
        return self._last_flush

    def flush(self, server: LocalPostgres, timeout_s: float = 30.0) -> datetime:
        """Make everything committed so far restorable; returns the latest restorable time (UTC).

        Recovery to a time stops at the first commit record past the target, and PostgreSQL 13+ fails a recovery
        that ends before reaching its target: a transaction with an xid writes that commit record, pg_switch_wal()
        closes its segment, and the wait ends when that segment is whole in the archive."""
        with self._flush_lock, connect(ConnectionSpec.from_url(server.url())) as conn:
            row = conn.execute("SELECT clock_timestamp(), pg_current_xact_id()").fetchone()
            assert row is not None
            committed = _utc(row[0])  # the commit record is written just after: a time recovery can reach
            row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
            assert row is not None
            segment = str(row[0])
            deadline = time.monotonic() + timeout_s
            while not (self.archive_dir / segment).exists():
                if time.monotonic() > deadline:
                    stats = conn.execute(
                        "SELECT last_archived_wal, failed_count, last_failed_wal FROM pg_stat_archiver"
                    ).fetchone()
                    raise DatabaseError(
                        f"WAL segment {segment} of the server on port {server.port} was not archived into "
                        f"{self.archive_dir} within {timeout_s:.0f} s (pg_stat_archiver: last archived "
                        f"{stats[0] if stats else None}, {stats[1] if stats else '?'} failures, last failed "
                        f"{stats[2] if stats else None}); check archive_command in the server log"
                    )
                time.sleep(0.02)
        self._last_flush = committed
        return committed

    def recover_to(
        self, target: datetime, *, bin_dir: Path, base_dir: Path | None = None, timeout_s: float = 60.0
    ) -> LocalPostgres:
        """A new server (own port, own data directory copied from the base backup) recovered to `target` from the
        archive and promoted, with the source's user and password. `base_dir` as LocalPostgres's (a new temporary
        folder when None). A target before the base backup is refused before anything is created; when recovery
        fails the new server is stopped, its base_dir removed, and RecoveryFailed quotes the server log's FATAL
        line. `timeout_s` bounds the wait for promotion once the server has started."""
        target = _utc(target)
        start = self.base_backup_time
        if target < start:
            raise RecoveryFailed(
                f"cannot recover to {target.isoformat()}: it is before the base backup of this archive "
                f"(finished {start.isoformat()}), the earliest moment it can restore; pick a later time"
            )
        server = LocalPostgres(bin_dir, base_dir=base_dir)
        if server.data_dir.exists():  # before anything is removed on failure: never someone else's data
            raise ConfigError(f"{server.data_dir} already exists; recover into an empty or new base_dir")
        server.user = self._user
        server.password = self._password or server.password  # the same cluster: the same roles and password
        try:
            self._prepare(server, target)
        except BaseException:
            shutil.rmtree(server.base_dir, ignore_errors=True)
            raise
        try:
            server.start()
            self._wait_promoted(server, timeout_s)
        except BaseException as exc:
            line = _failure_line(server.base_dir / "server.log")
            try:
                server.destroy()
            except subprocess.CalledProcessError:
                shutil.rmtree(server.base_dir, ignore_errors=True)
            if not isinstance(exc, Exception):
                raise
            why = f"PostgreSQL refused it: {line}" if line else f"{exc}"
            hint = ""
            if line and "before configured recovery target was reached" in line:
                last = self._last_flush.isoformat() if self._last_flush else "never"
                hint = (
                    f"; the archive ends before that moment (last flush {last}): flush() first or pick an earlier time"
                )
            raise RecoveryFailed(
                f"point-in-time recovery to {target.isoformat()} failed: {why}{hint} "
                "(the new server is stopped and its directory removed)",
                server_log_line=line,
            ) from None
        return server

    def _prepare(self, server: LocalPostgres, target: datetime) -> None:
        """The base backup copied into the new server's data directory, told to recover to `target`."""
        version_file = self.base_dir / "PG_VERSION"
        base_major = int(version_file.read_text().strip())
        if server.major != base_major:
            raise RecoveryFailed(
                f"the base backup is of PostgreSQL {base_major} but {server.bin_dir} holds PostgreSQL "
                f"{server.major}; recover with the same major version's binaries"
            )
        server.base_dir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(self.base_dir, server.data_dir, symlinks=True)
        for leftover in ("postmaster.pid", "postmaster.opts", "standby.signal"):
            (server.data_dir / leftover).unlink(missing_ok=True)
        server.data_dir.chmod(0o700)
        settings = {
            "restore_command": f'cp "{self.archive_dir}/%f" "%p"',
            "recovery_target_time": _pg_timestamp(target),
            "recovery_target_inclusive": "on",
            "recovery_target_action": "promote",
            "archive_mode": "off",
        }
        with (server.data_dir / "postgresql.conf").open("a") as fh:
            fh.write("\n# dbops point-in-time recovery\n")
            fh.writelines(f"{key} = {_conf_value(value)}\n" for key, value in settings.items())
        (server.data_dir / "recovery.signal").touch()
        if os.geteuid() == 0:
            _chown_tree(server.data_dir, pwd.getpwnam(SERVICE_USER))

    def _wait_promoted(self, server: LocalPostgres, timeout_s: float) -> None:
        spec = ConnectionSpec.from_url(server.url(), connect_timeout=2)
        deadline = time.monotonic() + timeout_s
        while True:
            if not (server.data_dir / "postmaster.pid").exists():
                raise DatabaseError("the recovering server exited")
            try:
                with connect(spec) as conn:
                    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                if row is not None and not row[0]:
                    return
            except (DatabaseError, psycopg.Error):
                pass
            if time.monotonic() > deadline:
                raise DatabaseError(f"the server did not finish recovery within {timeout_s:.0f} s")
            time.sleep(0.05)
