"""Transaction ID wraparound: the oldest unfrozen transaction of every database on the server (the server
stops accepting writes near 2^31), with the oldest tables of this one and multixact age alongside."""

from __future__ import annotations

from dbops.health.context import ProbeContext
from dbops.health.model import Finding
from dbops.health.thresholds import grade

WRAPAROUND_LIMIT = 2**31

DATABASES = """
    SELECT datname, age(datfrozenxid)::bigint AS xid_age, mxid_age(datminmxid)::bigint AS mxid_age,
           current_setting('autovacuum_freeze_max_age')::bigint AS freeze_max_age
    FROM pg_database
    ORDER BY xid_age DESC
"""

OLDEST_TABLES = """
    SELECT n.nspname, c.relname, age(c.relfrozenxid)::bigint AS xid_age
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'm', 't') AND c.relfrozenxid <> '0'::xid
    ORDER BY age(c.relfrozenxid) DESC
    LIMIT 3
"""


def probe_wraparound(ctx: ProbeContext) -> Finding:
    databases = ctx.rows(DATABASES)
    oldest = databases[0]
    xid_age = int(oldest["xid_age"])
    percent = 100.0 * xid_age / WRAPAROUND_LIMIT
    t = ctx.thresholds
    details = [f"database {r['datname']}: {r['xid_age']:,} transactions old" for r in databases[:3]]
    details += [
        f"table {r['nspname']}.{r['relname']} in {ctx.database}: {r['xid_age']:,}" for r in ctx.rows(OLDEST_TABLES)
    ]
    return Finding(
        status=grade(xid_age, t.xid_age_warn, t.xid_age_critical),
        message=f"oldest unfrozen transaction {xid_age:,} old in database {oldest['datname']} "
        f"({percent:.1f} % of the way to wraparound; autovacuum freezes from {int(oldest['freeze_max_age']):,}; "
        f"warn at {t.xid_age_warn:,})",
        values={
            "xid_wraparound_age": xid_age,
            "xid_wraparound_percent": round(percent, 3),
            "multixact_age": max(int(r["mxid_age"]) for r in databases),
        },
        details=details,
    )
