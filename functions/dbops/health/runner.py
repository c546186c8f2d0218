"""One health run: the backup catalog, then every database probe on one read-only session.

Each probe fails soft: a query that fails or times out makes that probe `error` with the reason, and the
next probe runs (the session is in autocommit, so nothing is left half-done). A database that cannot be
reached makes connectivity `critical` and the other database probes `unknown`; the backup check still runs.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import psycopg

from dbops import catalog
from dbops.catalog import CatalogEntry
from dbops.connection import ConnectionSpec, DatabaseConfig, connect, describe_error
from dbops.errors import DbopsError
from dbops.health.context import ProbeContext
from dbops.health.model import Finding, HealthReport, ProbeResult, Status
from dbops.health.probes import BACKUP_FRESHNESS, DATABASE_PROBES, Probe
from dbops.health.probes.backups import probe_backup_freshness
from dbops.health.probes.point_in_time import POINT_IN_TIME, probe_point_in_time
from dbops.health.settings import HealthSettings
from dbops.restore.point_in_time import Kind

SESSION_SETUP = """
    SELECT set_config('default_transaction_read_only', 'on', false),
           set_config('lock_timeout', %(lock_timeout)s, false)
"""


def _run_probe(probe: Probe, ctx: ProbeContext, deadline: float | None) -> ProbeResult:
    t0 = time.perf_counter()
    if ctx.conn.closed:
        finding = Finding(status=Status.ERROR, message="not run: the database connection was lost")
    elif deadline is not None and time.monotonic() > deadline:
        # an error, not unknown: a run that keeps running out of time must raise HealthProbeErrors
        finding = Finding(status=Status.ERROR, message="not run: out of time for this health run")
    else:
        try:
            finding = probe.run(ctx)
        except psycopg.Error as exc:
            finding = Finding(status=Status.ERROR, message=f"query failed: {describe_error(exc)}")
        except Exception as exc:  # a bug in one probe must not hide the others
            finding = Finding(status=Status.ERROR, message=f"probe failed: {type(exc).__name__}: {exc}")
    return ProbeResult(name=probe.name, seconds=round(time.perf_counter() - t0, 4), **finding.model_dump())


def _database_probes(
    target: ConnectionSpec | DatabaseConfig,
    settings: HealthSettings,
    database: str,
    now: datetime,
    newest_backup: CatalogEntry | None,
    deadline: float | None,
) -> tuple[list[ProbeResult], str | None]:
    t0 = time.perf_counter()
    try:
        spec = target.spec() if isinstance(target, DatabaseConfig) else target  # may read a secret
        t0 = time.perf_counter()
        with connect(spec, autocommit=True, statement_timeout_ms=settings.statement_timeout_ms) as conn:
            connect_ms = (time.perf_counter() - t0) * 1000
            conn.execute(SESSION_SETUP, {"lock_timeout": str(settings.lock_timeout_ms)})
            ctx = ProbeContext(
                conn=conn,
                settings=settings,
                database=database,
                now=now,
                connect_ms=connect_ms,
                newest_backup=newest_backup,
            )
            server_version = conn.info.parameter_status("server_version")
            return [_run_probe(p, ctx, deadline) for p in DATABASE_PROBES], server_version
    except (DbopsError, psycopg.Error) as exc:
        reason = str(exc) if isinstance(exc, DbopsError) else describe_error(exc)
    unreachable = ProbeResult(
        name=DATABASE_PROBES[0].name,
        status=Status.CRITICAL,
        message=f"database unreachable: {reason}",
        seconds=round(time.perf_counter() - t0, 4),
    )
    skipped = [
        ProbeResult(name=p.name, status=Status.UNKNOWN, message="not run: no connection to the database")
        for p in DATABASE_PROBES[1:]
    ]
    return [unreachable, *skipped], None


def _backup_probe(settings: HealthSettings, database: str, now: datetime) -> tuple[ProbeResult, CatalogEntry | None]:
    t0 = time.perf_counter()
    newest: CatalogEntry | None = None
    if settings.bucket is None:
        finding = Finding(status=Status.UNKNOWN, message="no backup bucket configured: backup freshness not checked")
    else:
        try:
            entries = catalog.list_backups(settings.bucket, database=database)
        except Exception as exc:  # S3 refused, or a manifest does not parse: report it, run the rest
            finding = Finding(
                status=Status.ERROR, message=f"cannot read the backup catalog: {type(exc).__name__}: {exc}"
            )
        else:
            finding = probe_backup_freshness(entries, settings.thresholds, now, database, settings.bucket)
            newest = next((e for e in entries if e.verified is not False), None)
    result = ProbeResult(name=BACKUP_FRESHNESS, seconds=round(time.perf_counter() - t0, 4), **finding.model_dump())
    return result, newest


def _point_in_time_probe(rds: tuple[Kind, str], settings: HealthSettings, now: datetime) -> ProbeResult:
    t0 = time.perf_counter()
    try:
        finding = probe_point_in_time(*rds, settings.thresholds, now)
    except Exception as exc:  # RDS refused or is unreachable: report it, run the rest
        finding = Finding(status=Status.ERROR, message=f"cannot read RDS {rds[0]} {rds[1]}: {exc}")
    return ProbeResult(name=POINT_IN_TIME, seconds=round(time.perf_counter() - t0, 4), **finding.model_dump())


def run_health(
    target: ConnectionSpec | DatabaseConfig,
    settings: HealthSettings | None = None,
    *,
    now: datetime | None = None,
    deadline: float | None = None,
) -> HealthReport:
    """Every probe on one database; `deadline` (time.monotonic()) fails probes that would start after it."""
    settings = settings or HealthSettings()
    t0 = time.monotonic()
    now = now or datetime.now(UTC)
    database = settings.database_name or (target.name if isinstance(target, DatabaseConfig) else target.dbname)
    backup, newest = _backup_probe(settings, database, now)
    probes, server_version = _database_probes(target, settings, database, now, newest, deadline)
    rds = settings.rds_source()
    if rds is not None:
        probes.append(_point_in_time_probe(rds, settings, now))
    ranked = sorted([*probes, backup], key=lambda p: -p.status.rank)
    return HealthReport(
        database=database,
        server_version=server_version,
        checked_at=now,
        seconds=round(time.monotonic() - t0, 4),
        probes=ranked,
    )
