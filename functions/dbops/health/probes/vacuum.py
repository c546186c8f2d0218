"""Dead tuples with a bloat estimate (the guide's bloat query, made useful), and vacuum / analyze age.

The guide lists n_dead_tup per table. Here a table counts when dead rows are a large share of it (over a
floor of rows, so small tables stay quiet); the estimate of wasted space is that share of the table's size.
Vacuum and analyze age only matter for tables autovacuum should have visited: more dead rows, or more
changed rows, than its own trigger (threshold + scale factor x rows). A table never vacuumed has no age to
judge; it is listed, and the dead-tuple check still catches it when it bloats.
"""

from __future__ import annotations

from psycopg import sql

from dbops.health.context import ProbeContext
from dbops.health.model import Finding, Status
from dbops.health.probes.relations import LOCKED, USER_TABLES
from dbops.health.thresholds import grade
from dbops.text import human_age, human_bytes, plural

DEAD_TUPLES = sql.SQL(
    """WITH {locked}, {user_tables},
    dead AS (
        SELECT u.nspname, u.relname, u.oid, u.is_locked, s.n_live_tup, s.n_dead_tup,
               100.0 * s.n_dead_tup / greatest(s.n_live_tup + s.n_dead_tup, 1) AS dead_percent,
               EXISTS (SELECT 1 FROM unnest(u.reloptions) o
                       WHERE o ~* '^autovacuum_enabled=(off|false|f|no|n|0)$') AS autovacuum_off,
               greatest(s.last_vacuum, s.last_autovacuum) AS last_vacuum
        FROM pg_stat_user_tables s JOIN user_tables u ON u.oid = s.relid
        WHERE s.n_dead_tup >= %(min_rows)s
    )
    SELECT nspname, relname, n_live_tup, n_dead_tup, dead_percent::float8, autovacuum_off, is_locked,
           extract(epoch FROM now() - last_vacuum)::float8 AS vacuum_age,
           CASE WHEN NOT is_locked THEN (pg_table_size(oid) * dead_percent / 100)::bigint END AS bloat_bytes
    FROM dead
    WHERE dead_percent >= %(warn_percent)s
    ORDER BY dead_percent DESC, n_dead_tup DESC
"""
).format(locked=LOCKED, user_tables=USER_TABLES)

ALL_DEAD = "SELECT coalesce(sum(n_dead_tup), 0) AS dead FROM pg_stat_user_tables"

OVERDUE = """
    WITH settings AS (
        SELECT current_setting('autovacuum_vacuum_threshold')::float8 AS v_base,
               current_setting('autovacuum_vacuum_scale_factor')::float8 AS v_scale,
               current_setting('autovacuum_analyze_threshold')::float8 AS a_base,
               current_setting('autovacuum_analyze_scale_factor')::float8 AS a_scale
    ),
    due AS (
        SELECT s.schemaname, s.relname, s.n_dead_tup, s.n_mod_since_analyze,
               s.n_dead_tup > st.v_base + st.v_scale * s.n_live_tup AS vacuum_due,
               s.n_mod_since_analyze > st.a_base + st.a_scale * s.n_live_tup AS analyze_due,
               extract(epoch FROM now() - greatest(s.last_vacuum, s.last_autovacuum))::float8 AS vacuum_age,
               extract(epoch FROM now() - greatest(s.last_analyze, s.last_autoanalyze))::float8 AS analyze_age
        FROM pg_stat_user_tables s, settings st
    )
    SELECT * FROM due
    WHERE (vacuum_due AND (vacuum_age IS NULL OR vacuum_age >= %(vacuum_warn)s))
       OR (analyze_due AND (analyze_age IS NULL OR analyze_age >= %(analyze_warn)s))
    ORDER BY greatest(CASE WHEN vacuum_due THEN coalesce(vacuum_age, 0) END,
                      CASE WHEN analyze_due THEN coalesce(analyze_age, 0) END) DESC NULLS LAST, 1, 2
"""


def probe_dead_tuples(ctx: ProbeContext) -> Finding:
    t = ctx.thresholds
    rows = ctx.rows(DEAD_TUPLES, {"min_rows": t.dead_tuples_min_rows, "warn_percent": t.dead_tuples_warn_percent})
    dead_total = int(ctx.row(ALL_DEAD)["dead"])
    worst = max((float(r["dead_percent"]) for r in rows), default=None)
    bloat = sum(int(r["bloat_bytes"] or 0) for r in rows)
    values = {
        "dead_tuples": dead_total,
        "bloated_tables": len(rows),
        "max_dead_tuples_percent": round(worst, 2) if worst is not None else 0.0,
        "bloat_estimate_bytes": bloat,
    }
    if not rows:
        return Finding(
            status=Status.OK,
            message=f"no table of {t.dead_tuples_min_rows}+ dead rows is {t.dead_tuples_warn_percent:g} % dead "
            f"({dead_total} dead rows in all)",
            values=values,
        )
    details = []
    for r in rows[: ctx.settings.top]:
        notes = [f"last vacuum {human_age(r['vacuum_age'])} ago" if r["vacuum_age"] is not None else "never vacuumed"]
        if r["autovacuum_off"]:
            notes.append("autovacuum disabled on this table")
        estimate = "size not measured (locked)" if r["is_locked"] else f"~{human_bytes(r['bloat_bytes'])} wasted"
        details.append(
            f"{r['nspname']}.{r['relname']}: {r['dead_percent']:.0f} % dead ({r['n_dead_tup']} dead, "
            f"{r['n_live_tup']} live), {estimate}; {', '.join(notes)}"
        )
    return Finding(
        status=grade(worst, t.dead_tuples_warn_percent, t.dead_tuples_critical_percent),
        message=f"{len(rows)} table{'s' if len(rows) > 1 else ''} at {t.dead_tuples_warn_percent:g} % dead rows "
        f"or more, worst {worst:.0f} %, ~{human_bytes(bloat)} to reclaim with VACUUM",
        values=values,
        details=details,
    )


def probe_vacuum_age(ctx: ProbeContext) -> Finding:
    t = ctx.thresholds
    rows = ctx.rows(OVERDUE, {"vacuum_warn": t.vacuum_age_warn_seconds, "analyze_warn": t.analyze_age_warn_seconds})
    vacuum_ages = [float(r["vacuum_age"]) for r in rows if r["vacuum_due"] and r["vacuum_age"] is not None]
    analyze_ages = [float(r["analyze_age"]) for r in rows if r["analyze_due"] and r["analyze_age"] is not None]
    never = [
        r
        for r in rows
        if (r["vacuum_due"] and r["vacuum_age"] is None) or (r["analyze_due"] and r["analyze_age"] is None)
    ]
    oldest_vacuum, oldest_analyze = max(vacuum_ages, default=None), max(analyze_ages, default=None)
    status = max(
        grade(oldest_vacuum, t.vacuum_age_warn_seconds, t.vacuum_age_critical_seconds),
        grade(oldest_analyze, t.analyze_age_warn_seconds, t.analyze_age_critical_seconds),
        key=lambda s: s.rank,
    )
    values = {
        "vacuum_overdue_tables": len(vacuum_ages),
        "analyze_overdue_tables": len(analyze_ages),
        "oldest_due_vacuum_seconds": round(oldest_vacuum or 0.0, 1),
        "oldest_due_analyze_seconds": round(oldest_analyze or 0.0, 1),
    }
    details = []
    for r in rows[: ctx.settings.top]:
        parts = []
        if r["vacuum_due"]:
            parts.append(f"vacuum due ({r['n_dead_tup']} dead rows), last {human_age(r['vacuum_age'])}")
        if r["analyze_due"]:
            parts.append(f"analyze due ({r['n_mod_since_analyze']} changed rows), last {human_age(r['analyze_age'])}")
        details.append(f"{r['schemaname']}.{r['relname']}: {'; '.join(parts)}")
    if status is Status.OK:
        message = f"autovacuum is keeping up (no table due for more than {human_age(t.vacuum_age_warn_seconds)})"
        if never:
            message += f"; {len(never)} table{'s' if len(never) > 1 else ''} due and never vacuumed or analyzed"
    else:
        message = (
            f"{plural(len(vacuum_ages), 'table')} due for vacuum, oldest last vacuumed {human_age(oldest_vacuum)} ago; "
            f"{len(analyze_ages)} due for analyze, oldest {human_age(oldest_analyze)} ago "
            f"(warn at {human_age(t.vacuum_age_warn_seconds)} / {human_age(t.analyze_age_warn_seconds)})"
        )
    return Finding(status=status, message=message, values=values, details=details)
