"""One health run: the backup catalog, then every database probe on one read-only session.

Each probe fails soft: a query that fails or times out makes that probe `error` with the reason, and the
next probe runs (the session is in autocommit, so nothing is left half-done). A database that cannot be
reached makes connectivity `critical` and the other database probes `unknown`; the backup check still runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg

from dbops.aws.rds import Kind
from dbops.backup import catalog
from dbops.backup.catalog import CatalogEntry
from dbops.config.databases import DatabaseConfig
from dbops.config.health import HealthSettings
from dbops.config.thresholds import Thresholds
from dbops.errors import DbopsError
from dbops.health.context import ProbeContext
from dbops.health.counters import TempFileBaseline, TempFileCounters, TempFileState
from dbops.health.model import Finding, HealthReport, ProbeResult, Status
from dbops.health.probes import BACKUP_FRESHNESS, DATABASE_PROBES, Probe
from dbops.health.probes.backups import probe_backup_freshness
from dbops.health.probes.point_in_time import POINT_IN_TIME, probe_point_in_time
from dbops.health.probes.rds_engine import RDS_ENGINE_VERSION, probe_rds_engine_version
from dbops.health.probes.rds_metrics import RDS_METRICS, probe_rds_metrics
from dbops.health.probes.temp_files import TEMP_FILES
from dbops.postgres.connection import ConnectionSpec, connect, database_spec, describe_error

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
    temp_file_state: TempFileState | None = None,
) -> tuple[list[ProbeResult], str | None]:
    t0 = time.perf_counter()
    baseline = _temp_file_baseline(temp_file_state, database)
    try:
        spec = database_spec(target) if isinstance(target, DatabaseConfig) else target  # may read a secret
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
                temp_files=baseline,
            )
            server_version = conn.info.parameter_status("server_version")
            results = [_run_probe(p, ctx, deadline) for p in DATABASE_PROBES]
            if temp_file_state is not None and baseline is not None and baseline.current is not None:
                results = _keep_temp_files(temp_file_state, database, baseline.current, results)
            return results, server_version
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


def _temp_file_baseline(state: TempFileState | None, database: str) -> TempFileBaseline | None:
    if state is None:
        return None
    try:
        return TempFileBaseline(previous=state.load(database))
    except Exception as exc:  # S3 refused, or the object does not parse: the temp_files probe reports it
        return TempFileBaseline(previous=None, error=f"cannot read the previous counters: {type(exc).__name__}: {exc}")


def _keep_temp_files(
    state: TempFileState, database: str, counters: TempFileCounters, results: list[ProbeResult]
) -> list[ProbeResult]:
    """Keep the counters for the next run; a failure makes the temp_files probe an error (next run's rate)."""
    try:
        state.save(database, counters)
    except Exception as exc:
        return [
            r.model_copy(
                update={
                    "status": Status.ERROR,
                    "message": f"counters not kept for the next run: {type(exc).__name__}: {exc}; {r.message}",
                }
            )
            if r.name == TEMP_FILES
            else r
            for r in results
        ]
    return results


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


def _aws_probe(
    name: str,
    probe: Callable[[Kind, str, Thresholds, datetime], Finding],
    rds: tuple[Kind, str],
    settings: HealthSettings,
    now: datetime,
) -> ProbeResult:
    t0 = time.perf_counter()
    try:
        finding = probe(*rds, settings.thresholds, now)
    except Exception as exc:  # RDS or CloudWatch refused or is unreachable: report it, run the rest
        finding = Finding(status=Status.ERROR, message=f"cannot read RDS {rds[0]} {rds[1]}: {exc}")
    return ProbeResult(name=name, seconds=round(time.perf_counter() - t0, 4), **finding.model_dump())


def run_health(
    target: ConnectionSpec | DatabaseConfig,
    settings: HealthSettings | None = None,
    *,
    now: datetime | None = None,
    deadline: float | None = None,
    temp_file_state: TempFileState | None = None,
) -> HealthReport:
    """Every probe on one database; `deadline` (time.monotonic()) fails probes that would start after it.

    `temp_file_state` keeps the temp-file counters between runs (`dbops.health.counters`): without it the
    temp_files probe has no previous run and reports totals, not a rate.
    """
    settings = settings or HealthSettings()
    t0 = time.monotonic()
    now = now or datetime.now(UTC)
    database = settings.database_name or (target.name if isinstance(target, DatabaseConfig) else target.dbname)
    backup, newest = _backup_probe(settings, database, now)
    probes, server_version = _database_probes(target, settings, database, now, newest, deadline, temp_file_state)
    rds = settings.rds_source()
    if rds is not None:  # the database's own RDS instance or Aurora cluster, read from the AWS APIs
        probes.append(_aws_probe(POINT_IN_TIME, probe_point_in_time, rds, settings, now))
        probes.append(_aws_probe(RDS_METRICS, probe_rds_metrics, rds, settings, now))
        probes.append(_aws_probe(RDS_ENGINE_VERSION, probe_rds_engine_version, rds, settings, now))
    ranked = sorted([*probes, backup], key=lambda p: -p.status.rank)
    return HealthReport(
        database=database,
        server_version=server_version,
        checked_at=now,
        seconds=round(time.monotonic() - t0, 4),
        probes=ranked,
    )
