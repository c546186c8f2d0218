"""WAL archiving, the base of the guide's point-in-time recovery: when archive_mode is on, the archiver must
not be failing, and segments must not pile up waiting. A quiet database archives rarely, so the age of the
last archived segment only counts while segments are waiting (`.ready` files, readable with pg_monitor)."""

from __future__ import annotations

from dbops.health.context import ProbeContext
from dbops.health.model import Finding, Status
from dbops.health.thresholds import grade
from dbops.text import human_age

ARCHIVE_STATUS_DIR_SINCE = 120000

ARCHIVER = """
    SELECT current_setting('archive_mode') AS archive_mode,
           archived_count, last_archived_wal, failed_count, last_failed_wal,
           extract(epoch FROM now() - last_archived_time)::float8 AS archived_age,
           extract(epoch FROM now() - last_failed_time)::float8 AS failed_age,
           coalesce(last_failed_time > last_archived_time
                    OR (last_failed_time IS NOT NULL AND last_archived_time IS NULL), false) AS failing,
           has_function_privilege('pg_ls_archive_statusdir()', 'EXECUTE') AS can_list
    FROM pg_stat_archiver
"""

READY = "SELECT count(*) AS ready FROM pg_ls_archive_statusdir() WHERE name LIKE '%%.ready'"


def probe_wal_archiving(ctx: ProbeContext) -> Finding:
    t = ctx.thresholds
    r = ctx.row(ARCHIVER)
    if r["archive_mode"] == "off":
        status = Status.CRITICAL if t.require_wal_archiving else Status.OK
        return Finding(
            status=status,
            message="archive_mode is off: no WAL archive, so no point-in-time recovery"
            + (" (required by the thresholds)" if t.require_wal_archiving else ""),
            values={"wal_archiving_on": 0},
        )
    ready = None
    if r["can_list"] and ctx.version_num >= ARCHIVE_STATUS_DIR_SINCE:
        ready = int(ctx.row(READY)["ready"])
    values = {
        "wal_archiving_on": 1,
        "archive_failed_count": int(r["failed_count"]),
        "archive_ready_files": ready,
        "last_archived_age_seconds": round(r["archived_age"], 1) if r["archived_age"] is not None else None,
    }
    statuses = [Status.OK]
    notes = []
    if r["failing"]:
        statuses.append(Status.CRITICAL)
        notes.append(
            f"the archiver is failing: {r['last_failed_wal']} failed {human_age(r['failed_age'])} ago "
            f"({r['failed_count']} failures since statistics reset); check archive_command and the server log"
        )
    if ready is not None:
        statuses.append(grade(ready, t.archive_ready_warn, t.archive_ready_critical))
        if ready and r["archived_age"] is not None:
            statuses.append(grade(r["archived_age"], t.archive_age_warn_seconds, t.archive_age_critical_seconds))
    status = max(statuses, key=lambda s: s.rank)
    last = (
        f"last archived {r['last_archived_wal']} {human_age(r['archived_age'])} ago"
        if r["last_archived_wal"]
        else "nothing archived yet"
    )
    waiting = (
        f", {ready} segment(s) waiting" if ready is not None else " (waiting segments not readable: grant pg_monitor)"
    )
    return Finding(
        status=status,
        message=f"archive_mode {r['archive_mode']}: {last}{waiting}; {r['archived_count']} archived, "
        f"{r['failed_count']} failed",
        values=values,
        details=notes,
    )
