"""What a parallel backup copies: every table's own rows but the small ones' (pg_dump's archive holds those), large
tables split into heap-page ranges sized by bytes."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from dbops.postgres.catalog import EXTENSION_MEMBER, SYSTEM_SCHEMA

# A range of a large table: about this many bytes of heap and TOAST. Each range is a job of its own: a psql
# process, a connection, a snapshot import and a multipart upload, about 30 ms of CPU in all (measured,
# bench/README.md); and a split table is read by TID range scans, which take no ring buffer as a sequential scan
# does (they cycle through shared_buffers) and cost its backend a few percent more CPU. So ranges are few and
# large: two a worker, 64 MB to 1 GiB each; one worker splits no table under 1 GiB.
RANGES_PER_WORKER = 2
MAX_RANGE_BYTES = 1024 * 1024 * 1024
MIN_RANGE_BYTES = 64 * 1024 * 1024
# A table under this size (heap and TOAST) has its rows in pg_dump's archive instead of a COPY job of its own: its
# job's fixed cost (a psql process, a connection, a snapshot import and an upload, ~30 ms of CPU) is more than
# pg_dump spends writing a few MB of rows in the stream it runs anyway. pg_dump's one stream runs beside the
# workers, so the small tables it takes add up to no more than one range's bytes (the smallest first): it is
# never the longest job. A database of only small tables is then backed up at pg_dump's own speed.
SMALL_TABLE_BYTES = 8 * 1024 * 1024
LAMBDA_MB_PER_VCPU = 1769  # Lambda gives one vCPU per 1,769 MB of memory
LAMBDA_MAX_VCPUS = 6

# every table that holds rows of its own (a leaf partition, an inheritance parent or child, an unlogged table), as
# pg_dump dumps its data: the columns pg_dump's COPY names (not dropped, not generated); tables of extensions
# (their configuration tables pg_dump dumps itself) stay in pg_dump's archive
COPIED_TABLES = sql.SQL("""
    SELECT c.oid, n.nspname, c.relname, pg_table_size(c.oid), pg_relation_size(c.oid),
        current_setting('block_size')::int8,
        ARRAY(SELECT a.attname::text FROM pg_attribute a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND {not_generated}
              ORDER BY a.attnum)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r' AND {system} AND NOT {extension_member}
    ORDER BY pg_table_size(c.oid) DESC, c.oid
""")


# the tables named, with their partitions and inheritance children at any depth
NAMED_AND_DESCENDANTS = """
    WITH RECURSIVE chosen(oid) AS (
        SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE (n.nspname, c.relname) IN (SELECT * FROM unnest(%(schemas)s::text[], %(names)s::text[]))
      UNION
        SELECT i.inhrelid FROM pg_inherits i JOIN chosen ON i.inhparent = chosen.oid
    )
    SELECT oid FROM chosen
"""


@dataclass(frozen=True)
class SourceTable:
    oid: int
    schema_name: str
    name: str
    bytes: int  # heap and TOAST (pg_table_size)
    pages: int  # heap pages (pg_relation_size / block size)
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Job:
    """One object of the backup: a table's rows, or one range of its heap pages ([first_page, end_page))."""

    table: SourceTable
    index: int
    first_page: int | None
    end_page: int | None
    bytes: int  # the share of the table's bytes it is expected to hold

    @property
    def what(self) -> str:
        table = f"table {self.table.schema_name}.{self.table.name}"
        if self.first_page is None and self.end_page is None:
            return table
        return f"{table} pages [{self.first_page or 0}, {'end' if self.end_page is None else self.end_page})"


def copied_tables(conn: psycopg.Connection[Any], server_version_num: int) -> list[SourceTable]:
    """The tables whose rows the workers copy, largest first (bytes including TOAST)."""
    not_generated = sql.SQL("a.attgenerated = ''" if server_version_num >= 120000 else "true")
    query = COPIED_TABLES.format(not_generated=not_generated, system=SYSTEM_SCHEMA, extension_member=EXTENSION_MEMBER)
    return [
        SourceTable(
            oid=int(r[0]),
            schema_name=r[1],
            name=r[2],
            bytes=int(r[3]),
            pages=int(r[4]) // int(r[5]),
            columns=tuple(r[6]),
        )
        for r in conn.execute(query).fetchall()
    ]


def named_tables(conn: psycopg.Connection[Any], names: list[tuple[str, str]]) -> set[int]:
    """The OIDs of the tables named (schema, name), with their partitions and children: what a limited backup
    holds the rows of."""
    params = {"schemas": [s for s, _ in names], "names": [n for _, n in names]}
    return {int(r[0]) for r in conn.execute(NAMED_AND_DESCENDANTS, params).fetchall()}


def range_bytes_for(tables: list[SourceTable], workers: int) -> int:
    """Ranges small enough that the workers share the largest tables (two ranges a worker, the largest first, keep
    them all busy to the end), and no smaller: every job costs a process, a connection and an upload. One worker
    has no one to share with: its tables are split only past MAX_RANGE_BYTES."""
    if workers <= 1:
        return MAX_RANGE_BYTES
    total = sum(t.bytes for t in tables)
    return max(MIN_RANGE_BYTES, min(MAX_RANGE_BYTES, total // max(1, workers * RANGES_PER_WORKER)))


def in_archive(tables: list[SourceTable], small_bytes: int, budget: int) -> set[int]:
    """The OIDs of the tables whose rows pg_dump writes in its archive: each under `small_bytes`, the smallest
    first while their bytes add up to no more than `budget`. `small_bytes` 0: none (every table a COPY job)."""
    chosen: set[int] = set()
    total = 0
    for table in sorted(tables, key=lambda t: (t.bytes, t.oid)):
        if table.bytes >= small_bytes or total + table.bytes > budget:
            break
        chosen.add(table.oid)
        total += table.bytes
    return chosen


def split(table: SourceTable, range_bytes: int) -> list[Job]:
    """The table as the nearest count of ranges of `range_bytes` (a table under one and a half of it stays whole),
    by heap pages in proportion to its bytes with TOAST (a table that is mostly TOAST has few heap pages but many
    bytes). The first range starts at the beginning and the last runs to the end, whatever the page count read at
    planning time."""
    count = max(1, min(table.pages, math.floor(table.bytes / range_bytes + 0.5)))  # the nearest count
    if count == 1:
        return [Job(table, 0, None, None, table.bytes)]
    step = math.ceil(table.pages / count)
    count = math.ceil(table.pages / step)
    return [
        Job(
            table,
            i,
            None if i == 0 else i * step,
            None if i == count - 1 else (i + 1) * step,
            table.bytes // count,
        )
        for i in range(count)
    ]


def plan_jobs(tables: list[SourceTable], range_bytes: int) -> list[Job]:
    """Every table's jobs, the largest first: the long ones start early and the small ones fill the gaps."""
    jobs = [job for table in tables for job in split(table, range_bytes)]
    return sorted(jobs, key=lambda j: (-j.bytes, j.table.oid, j.index))


CPU_UNITS_PER_VCPU = 1024  # Fargate's CPU units


@dataclass(frozen=True)
class Streams:
    """How many COPY streams a parallel backup may run here, and why."""

    count: int
    why: str


def copy_streams(
    max_streams: int, *, lambda_memory_mb: int | None = None, task_cpu_units: int | None = None
) -> Streams:
    """At most `max_streams`, and no more than the machine's vCPUs: a Fargate task's from its task definition's CPU
    units (rounded down, at least 1: the host's CPU count is not the task's), Lambda's from its memory (one vCPU per
    1,769 MB, up to 6) and the CPUs this process sees, else those CPUs alone."""
    if task_cpu_units:
        available = max(1, task_cpu_units // CPU_UNITS_PER_VCPU)
        machine = f"Fargate task: {task_cpu_units / CPU_UNITS_PER_VCPU:g} vCPUs"
    else:
        available = os.cpu_count() or 1
        if lambda_memory_mb:
            available = min(available, max(1, min(LAMBDA_MAX_VCPUS, lambda_memory_mb // LAMBDA_MB_PER_VCPU)))
        machine = f"Lambda: {lambda_memory_mb} MB" if lambda_memory_mb else "this machine's CPUs"
    count = max(1, min(max_streams, available))
    return Streams(count, machine if count < max_streams else f"max_streams {max_streams} ({machine})")
