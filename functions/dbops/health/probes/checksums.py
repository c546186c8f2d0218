"""Data checksums (server-wide): a page whose checksum does not match was changed on disk behind PostgreSQL's
back (storage, memory, a bug): any count in `pg_stat_database.checksum_failures` (12+, every database and the
shared objects) is critical. Whether checksums are on at all is chosen at initdb (on by default from 18) and
changed only offline with pg_checksums: off is a note, or a warning when the thresholds require them."""

from __future__ import annotations

from dbops.health.context import ProbeContext
from dbops.health.model import Finding, Status
from dbops.text import human_age

CHECKSUM_FAILURES_SINCE = 120000

SETTING = "SELECT current_setting('data_checksums') = 'on' AS enabled"

FAILURES = """
    SELECT coalesce(datname, '(shared objects)') AS datname, checksum_failures,
           extract(epoch FROM now() - checksum_last_failure)::float8 AS last_failure_age
    FROM pg_stat_database
    WHERE checksum_failures > 0
    ORDER BY checksum_failures DESC, 1
"""


def probe_checksums(ctx: ProbeContext) -> Finding:
    on = bool(ctx.row(SETTING)["enabled"])
    if not on:
        required = ctx.thresholds.require_data_checksums
        return Finding(
            status=Status.WARN if required else Status.OK,
            message="data checksums are off: a page corrupted on disk goes unnoticed until a query trips on it"
            + (" (required by the thresholds)" if required else "")
            + "; they are enabled offline (pg_checksums --enable) or by a logical copy to a server that has them",
            values={"data_checksums_on": 0, "checksum_failures": None},
        )
    if ctx.version_num < CHECKSUM_FAILURES_SINCE:
        return Finding(
            status=Status.OK,
            message="data checksums are on (failures are counted from PostgreSQL 12)",
            values={"data_checksums_on": 1, "checksum_failures": None},
        )
    rows = ctx.rows(FAILURES)
    failures = sum(int(r["checksum_failures"]) for r in rows)
    values = {"data_checksums_on": 1, "checksum_failures": failures}
    if not failures:
        return Finding(status=Status.OK, message="data checksums are on: no checksum failure", values=values)
    return Finding(
        status=Status.CRITICAL,
        message=f"{failures} checksum failure{'s' if failures > 1 else ''} since statistics were reset: pages "
        "changed on disk behind PostgreSQL's back. Find the damaged relations (pg_amcheck, or the server log's "
        "'invalid page' errors), check the storage, and restore them from a backup",
        values=values,
        details=[
            f"database {r['datname']}: {r['checksum_failures']} failure{'s' if r['checksum_failures'] > 1 else ''}, "
            f"the last {human_age(r['last_failure_age'])} ago"
            for r in rows[: ctx.settings.top]
        ],
    )
