"""Cache hit ratio of tables and indexes (PgHero's rates), judged once enough blocks were read to mean
something: a freshly started server reads everything from disk at first."""

from __future__ import annotations

from dbops.health.context import ProbeContext
from dbops.health.model import Finding, Status
from dbops.health.thresholds import grade_low

CACHE = """
    SELECT coalesce(sum(heap_blks_hit), 0) AS heap_hit, coalesce(sum(heap_blks_read), 0) AS heap_read,
           coalesce(sum(idx_blks_hit), 0) AS idx_hit, coalesce(sum(idx_blks_read), 0) AS idx_read
    FROM pg_statio_user_tables
"""


def _ratio(hit: int, read: int) -> float | None:
    return 100.0 * hit / (hit + read) if hit + read else None


def probe_cache_hit(ctx: ProbeContext) -> Finding:
    r = ctx.row(CACHE)
    heap_hit, heap_read, idx_hit, idx_read = (int(r[k]) for k in ("heap_hit", "heap_read", "idx_hit", "idx_read"))
    table = _ratio(heap_hit, heap_read)
    index = _ratio(idx_hit, idx_read)
    values = {
        "table_cache_hit_percent": round(table, 3) if table is not None else None,
        "index_cache_hit_percent": round(index, 3) if index is not None else None,
    }
    t = ctx.thresholds
    blocks = heap_hit + heap_read + idx_hit + idx_read
    if blocks < t.cache_hit_min_blocks:
        return Finding(
            status=Status.OK,
            message=f"only {blocks} blocks read since statistics began: too few to judge the cache",
            values=values,
        )
    judged = [
        grade_low(x, t.cache_hit_warn_percent, t.cache_hit_critical_percent)
        for x, n in ((table, heap_hit + heap_read), (index, idx_hit + idx_read))
        if n >= t.cache_hit_min_blocks
    ]
    status = max(judged, key=lambda s: s.rank, default=Status.OK)

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f} %"

    return Finding(
        status=status,
        message=f"cache hit: tables {pct(table)}, indexes {pct(index)} (warn below {t.cache_hit_warn_percent:g} %)",
        values=values,
    )
