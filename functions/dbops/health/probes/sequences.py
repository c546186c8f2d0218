"""Sequences near their maximum: against the sequence's own limit, or the owning column's type when that is
smaller (a bigint sequence feeding an integer column fails at 2^31 - 1 all the same)."""

from __future__ import annotations

from dbops.health.context import ProbeContext
from dbops.health.model import Finding
from dbops.health.thresholds import grade

SEQUENCES = """
    WITH seqs AS (
        SELECT n.nspname, c.relname, s.seqincrement, s.seqmax, s.seqmin,
               CASE WHEN has_sequence_privilege(c.oid, 'SELECT,USAGE') THEN pg_sequence_last_value(c.oid) END
                   AS last_value,
               owner.table_name, owner.column_name, owner.column_type
        FROM pg_sequence s
        JOIN pg_class c ON c.oid = s.seqrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN LATERAL (
            SELECT t.relname AS table_name, a.attname AS column_name, a.atttypid::regtype::text AS column_type
            FROM pg_depend d
            JOIN pg_class t ON t.oid = d.refobjid
            JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
            WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
              AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
            LIMIT 1
        ) owner ON true
        WHERE n.nspname NOT LIKE 'pg\\_temp%%'
    ),
    limits AS (
        SELECT *,
               CASE WHEN seqincrement > 0
                    THEN least(seqmax::numeric, CASE column_type WHEN 'smallint' THEN 32767
                                                                 WHEN 'integer' THEN 2147483647 END)
                    ELSE greatest(seqmin::numeric, CASE column_type WHEN 'smallint' THEN -32768
                                                                    WHEN 'integer' THEN -2147483648 END)
               END AS stop
        FROM seqs
        WHERE last_value IS NOT NULL
    )
    SELECT nspname, relname, last_value, stop, table_name, column_name, column_type,
           (100 * last_value::numeric / nullif(stop, 0))::float8 AS used_percent,
           count(*) OVER () AS sequences,
           count(*) FILTER (WHERE 100 * last_value::numeric / nullif(stop, 0) >= %(warn)s) OVER () AS near
    FROM limits
    ORDER BY used_percent DESC NULLS LAST
    LIMIT %(top)s
"""


def probe_sequences(ctx: ProbeContext) -> Finding:
    t = ctx.thresholds
    rows = ctx.rows(SEQUENCES, {"top": ctx.settings.top, "warn": t.sequence_warn_percent})
    near = [r for r in rows if (r["used_percent"] or 0) >= t.sequence_warn_percent]
    near_count = int(rows[0]["near"]) if rows else 0
    worst = float(rows[0]["used_percent"] or 0) if rows else 0.0
    values = {"sequences_near_max": near_count, "max_sequence_used_percent": round(worst, 3)}
    details = []
    for r in near:
        owner = f", feeds {r['table_name']}.{r['column_name']} ({r['column_type']})" if r["table_name"] else ""
        details.append(
            f"{r['nspname']}.{r['relname']}: {r['last_value']:,} of {int(r['stop']):,} ({r['used_percent']:.1f} %)"
            f"{owner}"
        )
    if near:
        message = (
            f"{near_count} sequence{'s' if near_count > 1 else ''} at {t.sequence_warn_percent:g} % of the maximum "
            f"or more, highest {worst:.1f} %: widen the column and sequence to bigint"
        )
    else:
        count = int(rows[0]["sequences"]) if rows else 0
        message = f"{count} sequences in use, highest at {worst:.2f} % of its maximum"
    return Finding(
        status=grade(worst, t.sequence_warn_percent, t.sequence_critical_percent),
        message=message,
        values=values,
        details=details,
    )
