"""Connectivity: the session opened (timed by the runner) and the round trip of a trivial query."""

from __future__ import annotations

import time

from dbops.health.context import ProbeContext
from dbops.health.model import Finding
from dbops.health.thresholds import grade

PING = "SELECT 1"
ROUND_TRIPS = 3


def probe_connectivity(ctx: ProbeContext) -> Finding:
    timings = []
    for _ in range(ROUND_TRIPS):
        t0 = time.perf_counter()
        ctx.conn.execute(PING).fetchone()
        timings.append((time.perf_counter() - t0) * 1000)
    round_trip = min(timings)  # the network's cost, not a scheduler hiccup
    t = ctx.thresholds
    status = grade(round_trip, t.round_trip_warn_ms, t.round_trip_critical_ms)
    return Finding(
        status=status,
        message=f"connected in {ctx.connect_ms:.0f} ms, round trip {round_trip:.2f} ms "
        f"(warn at {t.round_trip_warn_ms:g} ms)",
        values={"connect_ms": round(ctx.connect_ms, 2), "round_trip_ms": round(round_trip, 3)},
    )
