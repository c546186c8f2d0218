"""Replication slots (server-wide): a slot keeps every WAL segment its consumer has not confirmed, whatever
max_wal_size says, until the disk is full. A slot nobody reads (inactive) does so without end, so it is a
warning whatever it holds yet; the WAL each slot retains (from its restart_lsn to the current WAL position) is
graded against the thresholds; and a slot whose WAL is gone (wal_status `lost`, 13+: max_slot_wal_keep_size
removed it; or invalidated, 17+) can never be caught up: critical."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from dbops.health.context import ProbeContext
from dbops.health.model import Finding, Status
from dbops.health.thresholds import grade
from dbops.text import human_age, human_bytes

WAL_STATUS_SINCE = 130000
INACTIVE_SINCE = 170000  # inactive_since and invalidation_reason

# on a standby the position is the WAL received (check_postgres does the same), else the WAL replayed
SLOTS = sql.SQL("""
    SELECT slot_name, slot_type, database, active, temporary,
           pg_wal_lsn_diff(
               CASE WHEN pg_is_in_recovery() THEN coalesce(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())
                    ELSE pg_current_wal_lsn() END,
               restart_lsn)::bigint AS retained_bytes,
           {wal_status} AS wal_status, {inactive_seconds} AS inactive_seconds, {invalidation} AS invalidation,
           current_setting('max_slot_wal_keep_size', true) AS keep_size
    FROM pg_replication_slots
    ORDER BY retained_bytes DESC NULLS LAST, slot_name
""")


def _query(version_num: int) -> sql.Composed:
    since_13, since_17 = version_num >= WAL_STATUS_SINCE, version_num >= INACTIVE_SINCE
    return SLOTS.format(
        wal_status=sql.SQL("wal_status" if since_13 else "NULL::text"),
        inactive_seconds=sql.SQL("extract(epoch FROM now() - inactive_since)::float8" if since_17 else "NULL::float8"),
        invalidation=sql.SQL("invalidation_reason" if since_17 else "NULL::text"),
    )


def _is_lost(r: dict[str, Any]) -> bool:
    return r["wal_status"] == "lost" or r["invalidation"] is not None


def _detail(r: dict[str, Any]) -> str:
    where = f", database {r['database']}" if r["database"] else ""
    kind = f"{'temporary ' if r['temporary'] else ''}{r['slot_type']}"
    if r["active"]:
        state = "active"
    else:
        state = "inactive" + (f" for {human_age(r['inactive_seconds'])}" if r["inactive_seconds"] is not None else "")
    retained = (
        f"retains {human_bytes(r['retained_bytes'])} of WAL" if r["retained_bytes"] is not None else "retains no WAL"
    )
    text = f"slot {r['slot_name']} ({kind}{where}) {state}: {retained}"
    if r["wal_status"]:
        text += f", wal_status {r['wal_status']}"
    if r["invalidation"]:
        text += f", invalidated ({r['invalidation']})"
    if _is_lost(r):
        text += ": its consumer can never catch up; drop the slot and rebuild the standby or subscription"
    elif r["wal_status"] == "unreserved":
        text += ": WAL it needs goes at the next checkpoint unless its consumer catches up"
    elif not r["active"]:
        text += ": if nothing will read it again, pg_drop_replication_slot('" + r["slot_name"] + "')"
    return text


def probe_replication_slots(ctx: ProbeContext) -> Finding:
    t = ctx.thresholds
    rows = ctx.rows(_query(ctx.version_num))
    inactive = [r for r in rows if not r["active"]]
    lost = [r for r in rows if _is_lost(r)]
    unreserved = [r for r in rows if r["wal_status"] == "unreserved"]
    retained = [int(r["retained_bytes"]) for r in rows if r["retained_bytes"] is not None]
    most = max(retained, default=0)
    values = {
        "replication_slots": len(rows),
        "replication_slots_inactive": len(inactive),
        "replication_slots_lost": len(lost),
        "slot_retained_wal_bytes": most,
    }
    if not rows:
        return Finding(status=Status.OK, message="no replication slots", values=values)
    statuses = [grade(most, t.slot_retained_wal_warn_bytes, t.slot_retained_wal_critical_bytes)]
    if inactive or unreserved:
        statuses.append(Status.WARN)
    if lost:
        statuses.append(Status.CRITICAL)
    status = max(statuses, key=lambda s: s.rank)
    keep = rows[0]["keep_size"]
    keep_text = "" if keep is None else f"; max_slot_wal_keep_size {'-1 (unlimited)' if keep == '-1' else keep}"
    problems = [f"{len(inactive)} inactive"] if inactive else []
    problems += [f"{len(lost)} lost their WAL"] if lost else []
    problems += [f"{len(unreserved)} unreserved"] if unreserved else []
    holder = rows[0]  # ordered by the WAL retained, most first
    return Finding(
        status=status,
        message=f"{len(rows)} replication slot{'s' if len(rows) > 1 else ''}"
        + (f" ({', '.join(problems)})" if problems else "")
        + f"; most WAL retained {human_bytes(most)} by {holder['slot_name']} "
        f"(warn at {human_bytes(t.slot_retained_wal_warn_bytes)}, "
        f"critical at {human_bytes(t.slot_retained_wal_critical_bytes)})" + keep_text,
        values=values,
        details=[_detail(r) for r in sorted(rows, key=lambda r: (not _is_lost(r), r["active"]))][: ctx.settings.top],
    )
