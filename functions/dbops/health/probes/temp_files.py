"""Temporary files written by this database's queries (sorts, hashes and materializations that did not fit in
work_mem), as a rate since the previous run: pg_stat_database only has totals since statistics were reset.

The probe reads the previous run's counters from the context (`ctx.temp_files`, set when the run keeps a
`TempFileState`) and leaves the ones it read there for the runner to keep. No state: the totals, no rate. No
previous counters, or statistics reset since (stats_reset changed, or the counters went down, as after a crash
or a failover): the counters just read become the baseline.
"""

from __future__ import annotations

from dbops.health.context import ProbeContext
from dbops.health.counters import TempFileCounters
from dbops.health.model import Finding, Status
from dbops.health.thresholds import grade
from dbops.text import human_age, human_bytes

TEMP_FILES = "temp_files"  # the probe's name, for the runner that keeps its counters

COUNTERS = """
    SELECT temp_files, temp_bytes, stats_reset, clock_timestamp() AS taken_at
    FROM pg_stat_database
    WHERE datname = current_database()
"""

ADVICE = (
    "queries spill to disk: find them (log_temp_files = 0 logs each temp file with its query; pg_stat_statements "
    "ranks them by temp_blks_written) and raise work_mem for them (SET LOCAL, or the role's setting)"
)


def _totals(c: TempFileCounters) -> str:
    since = f"since {c.stats_reset:%Y-%m-%d %H:%M}" if c.stats_reset else "since statistics began"
    return f"{c.temp_files:,} temp files, {human_bytes(c.temp_bytes)} {since}"


def probe_temp_files(ctx: ProbeContext) -> Finding:
    t = ctx.thresholds
    r = ctx.row(COUNTERS)
    current = TempFileCounters(
        temp_files=int(r["temp_files"]),
        temp_bytes=int(r["temp_bytes"]),
        stats_reset=r["stats_reset"],
        taken_at=r["taken_at"],
    )
    no_rate: dict[str, int | float | None] = {"temp_files_per_hour": None, "temp_hourly_bytes": None}
    baseline = ctx.temp_files
    if baseline is None:
        return Finding(
            status=Status.OK,
            message=f"no previous run to compare with (no counters kept): {_totals(current)}",
            values=no_rate,
        )
    if baseline.error is not None:
        return Finding(status=Status.ERROR, message=baseline.error, values=no_rate)
    baseline.current = current
    previous = baseline.previous
    if previous is None:
        return Finding(status=Status.OK, message=f"baseline recorded: {_totals(current)}", values=no_rate)
    seconds = (current.taken_at - previous.taken_at).total_seconds()
    if (
        previous.stats_reset != current.stats_reset
        or current.temp_files < previous.temp_files
        or current.temp_bytes < previous.temp_bytes
    ):
        return Finding(
            status=Status.OK,
            message=f"statistics were reset since the previous run {human_age(seconds)} ago: new baseline recorded "
            f"({_totals(current)})",
            values=no_rate,
        )
    if seconds <= 0:  # a clock that went back: nothing to divide by
        return Finding(status=Status.OK, message=f"new baseline recorded: {_totals(current)}", values=no_rate)
    files, written = current.temp_files - previous.temp_files, current.temp_bytes - previous.temp_bytes
    hours = seconds / 3600
    files_rate, bytes_rate = files / hours, written / hours
    status = grade(bytes_rate, t.temp_files_warn_bytes_per_hour, t.temp_files_critical_bytes_per_hour)
    return Finding(
        status=status,
        message=f"{human_bytes(bytes_rate)} of temp files an hour ({files_rate:,.0f} files an hour): {files:,} files, "
        f"{human_bytes(written)} since the previous run {human_age(seconds)} ago "
        f"(warn at {human_bytes(t.temp_files_warn_bytes_per_hour)} an hour, "
        f"critical at {human_bytes(t.temp_files_critical_bytes_per_hour)})",
        values={"temp_files_per_hour": round(files_rate, 1), "temp_hourly_bytes": round(bytes_rate)},
        details=[ADVICE] if status is not Status.OK else [],
    )
