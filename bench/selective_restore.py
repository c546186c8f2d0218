"""Selective restore benchmark: dbops restoring one small table of a ~1 GB backup into the live database,
against a full dbops restore of the same backup into a new database, in one run.

    python -m bench.selective_restore [--scale 9] [--table users] [--table teams] [--repeat 3]

Both sides run the same restore steps (validate, stage, check, swap, finish), alternating, best of N each.
Before each selective restore the table is damaged a little (rows edited, a few deleted) so the swap has work;
afterwards the table must hold the backup's rows again. The full restore goes into a new database
(`target=`), so it takes no safety backup and renames nothing; that database is dropped after each round,
outside the timing. The safety backup the selective restore takes first (the live database exists) is a
backup, not restore work: it is timed once on its own line. Stage is split into its calls (fetching and
unpacking the archive, listing and filtering its table of contents, pg_restore) by timing each call.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock

from psycopg import sql

from bench.common import SAMPLE, BackedUpSample, Step, backed_up_sample, mb, run_steps, timed_safety_backup
from dbops.cli.sample_data import row_counts_for
from dbops.postgres.connection import ConnectionSpec, connect
from dbops.restore import archive, databases, stage, steps
from dbops.restore.models import RestoreRequest, RestoreState


def size(n: int) -> str:
    return mb(n) if n >= 1e6 else f"{n / 1e3:,.0f} kB"


STEPS: tuple[Step, ...] = (steps.validate, steps.stage, steps.check, steps.swap, steps.finish)
FULL_TARGET = "bench_full_restore"


@dataclass(frozen=True)
class Damage:
    """What is done to the live table before a selective restore, and how many damaged rows are left after it
    (queries taking `new_hires`: users past this id own no issues or snapshots)."""

    apply: list[str]
    left: str


def damage_for(table: str) -> Damage:
    # users: rows edited, and five new hires deleted (the newest 20 % of users own no issues or snapshots);
    # no rows are added, since deleting them again in the swap would scan report_snapshots (its created_by has
    # no index) once per row for the foreign key. teams: every team has users and sprints, so edits only.
    if table == "users":
        return Damage(
            [
                "UPDATE users SET full_name = full_name || ' (edited)', is_active = NOT is_active WHERE id %% 100 = 0",
                "DELETE FROM users WHERE id > %(new_hires)s AND id <= %(new_hires)s + 5",
            ],
            "SELECT (SELECT count(*) FROM users WHERE full_name LIKE '%% (edited)') "
            "+ (SELECT 5 - count(*) FROM users WHERE id > %(new_hires)s AND id <= %(new_hires)s + 5)",
        )
    if table == "teams":
        return Damage(
            ["UPDATE teams SET name = name || ' (renamed)' WHERE id %% 10 = 0"],
            "SELECT count(*) FROM teams WHERE name LIKE '%% (renamed)'",
        )
    raise SystemExit(f"no damage defined for table {table!r}: choose users or teams")


def execute(spec: ConnectionSpec, query: str | sql.Composed, scale: float = 0.0) -> int:
    """Run one statement; its first value, or the rows it changed."""
    with connect(spec) as conn:
        cur = conn.execute(query, {"new_hires": row_counts_for(scale)["used_users"]} if scale else None)
        row = cur.fetchone() if cur.description else None
        return int(row[0]) if row else cur.rowcount


# the calls stage makes, timed where they are looked up: archive's functions on its module, pg_restore on stage's
STAGE_CALLS = (
    (archive, "download", "fetch + unpack the archive"),
    (archive, "selective_list", "pg_restore --list + filter (-L list)"),
    (stage, "run_pg_restore", "pg_restore"),
)


@contextmanager
def timed_calls() -> Iterator[dict[str, float]]:
    """Wall time of each call in STAGE_CALLS while inside, by label (a name the code no longer has is skipped)."""
    spent: dict[str, float] = {}

    def timed(original: Callable[..., Any], label: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - t0

        return call

    with ExitStack() as stack:
        for owner, name, label in STAGE_CALLS:
            if hasattr(owner, name):
                stack.enter_context(mock.patch.object(owner, name, timed(getattr(owner, name), label)))
        yield spent


def selective_round(sample: BackedUpSample, table: str, damage: Damage, scale: float, safety: bool) -> dict[str, float]:
    """Damage the table, restore it alone; step and stage-call timings (plus the safety backup when asked)."""
    settings, spec = sample.settings, sample.spec
    for query in damage.apply:
        execute(spec, query, scale)
    state = RestoreState(request=RestoreRequest(backup=sample.manifest.id, tables=[table]))
    extra: dict[str, float] = {}
    if safety:
        state, extra["safety_backup"] = timed_safety_backup(state, settings)
        assert state.safety_backup_id is not None
    state = state.model_copy(update={"safety_backup_id": state.safety_backup_id or "timed-once"})
    os.sync()  # no dirty pages left by the damage or the other side
    with timed_calls() as calls:
        state, timings = run_steps(state, settings, STEPS)
    left = execute(spec, damage.left, scale)
    rows = execute(spec, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
    expected = next(t.rows for t in sample.manifest.tables if t.name == table)
    if left or rows != expected:
        raise SystemExit(f"after the selective restore {table} has {rows} rows (backup {expected}), {left} damaged")
    return {**timings, **calls, **extra}


def full_round(sample: BackedUpSample) -> dict[str, float]:
    state = RestoreState(request=RestoreRequest(backup=sample.manifest.id, target=FULL_TARGET))
    os.sync()
    with timed_calls() as calls:
        state, timings = run_steps(state, sample.settings, STEPS)
    assert state.target_db == FULL_TARGET and state.pre_restore_db is None and not state.safety_backup_id
    # dropped right away, outside the timing: a restored gigabyte left in the page cache would make the next
    # side's writes take memory the VM has not touched (see bench/README.md, Restore)
    databases.drop(sample.spec, FULL_TARGET)
    return {**timings, **calls}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=9.0, help="9 is about 1 GB")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="best of N, the sides alternating")
    parser.add_argument(
        "--table", action="append", choices=["users", "teams"], help="restored alone (repeatable; default users)"
    )
    args = parser.parse_args()
    tables: list[str] = args.table or ["users"]
    with backed_up_sample(args.scale, args.jobs) as sample:
        dump = sample.manifest.dump
        print(f"# backup: archive {mb(dump.size)} stored (zstd), {mb(dump.raw_size)} unpacked", flush=True)
        for t in sample.manifest.tables:
            print(f"# table {t.name}: {t.rows:,} rows, {size(t.bytes)} with indexes", flush=True)
        damages = {table: damage_for(table) for table in tables}
        sides = ["full", *tables]
        runs: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
        safety_s: float | None = None
        for i in range(args.repeat):
            for side in sides if i % 2 == 0 else reversed(sides):  # each side first in turn
                if side == "full":
                    run = full_round(sample)
                else:
                    run = selective_round(sample, side, damages[side], args.scale, safety=safety_s is None)
                    safety_s = run.pop("safety_backup", safety_s)
                runs[side].append(run)
                seconds = sum(run[s.__name__] for s in STEPS)
                print(f"# round {i + 1} {side}: {seconds:.2f} s (stage {run['stage']:.2f} s)", flush=True)

    def total(run: dict[str, float]) -> float:
        return sum(run[s.__name__] for s in STEPS)

    best = {side: min(runs[side], key=total) for side in sides}
    full = best["full"]
    rows = {t.name: t for t in sample.manifest.tables}
    print()
    header = " | ".join(f"selective `{t}` ({rows[t].rows:,} rows, {size(rows[t].bytes)})" for t in tables)
    print(f"| seconds, best of {args.repeat} ({args.jobs} jobs) | {header} | full restore into a new database |")
    print("|---|" + "---|" * (len(tables) + 1))

    def line(label: str, value: Callable[[dict[str, float]], str]) -> None:
        print(f"| {label} | " + " | ".join(value(best[side]) for side in [*tables, "full"]) + " |")

    def value(key: str) -> Callable[[dict[str, float]], str]:
        return lambda run: f"{run[key]:.2f}" if key in run else "—"

    for step in STEPS:
        line(step.__name__, value(step.__name__))
        if step is steps.stage:
            for _, _, label in STAGE_CALLS:
                line(f"&nbsp;&nbsp;stage: {label}", value(label))
            line(
                "&nbsp;&nbsp;stage: the rest (work database created, temp folder)",
                lambda run: f"{run['stage'] - sum(run.get(label, 0.0) for _, _, label in STAGE_CALLS):.2f}",
            )
    line("**restore (validate + stage + check + swap + finish)**", lambda run: f"**{total(run):.2f}**")
    print(
        "| every run's total, in order | "
        + " | ".join(", ".join(f"{total(r):.2f}" for r in runs[side]) for side in [*tables, "full"])
        + " |"
    )

    def ratio(of: Callable[[dict[str, float]], float]) -> Callable[[dict[str, float]], str]:
        return lambda run: "" if run is full else f"{of(full) / of(run):.2f}x"

    line("**ratio full / selective**", ratio(total))
    line("ratio of stage alone, full / selective", ratio(lambda run: run["stage"]))
    safety = safety_s or 0.0
    print(f"| safety backup of the live database (once, not in the totals) | {safety:.2f} |")
    line(
        "ratio with that safety backup added to both sides (a full restore over the live database takes it "
        "too; computed, not measured)",
        ratio(lambda run: total(run) + safety),
    )
    print(f"# sample {SAMPLE} at scale {args.scale}; load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
