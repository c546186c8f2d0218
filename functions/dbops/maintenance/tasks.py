"""The five maintenance tasks: each planned first (what runs, on which objects, why), then executed object by
object. `plan_task`, `execute_plan` and `run_task` are the entry points the CLI, the handler and the demo use.

- analyze: ANALYZE table by table (weekly).
- vacuum: VACUUM (ANALYZE, SKIP_LOCKED) only on tables past the dead-tuple thresholds (nightly).
- reindex: REINDEX INDEX CONCURRENTLY on bloated indexes (or all), never REINDEX DATABASE; invalid indexes are
  skipped, the invalid `_ccnew`/`_ccold` leftovers of an interrupted concurrent reindex are dropped first.
- cleanup / archive: the retention rules, in batches (see row_cleanup.py).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from dbops.config.maintenance import MaintenanceConfig, Task
from dbops.errors import DbopsError, GiveUp, LockUnavailable
from dbops.maintenance import objects, row_cleanup
from dbops.maintenance.models import (
    MaintenanceSummary,
    ObjectKind,
    ObjectResult,
    Plan,
    PlannedObject,
    Progress,
    ProgressEvent,
)
from dbops.maintenance.rules import CheckedRule, check_rules
from dbops.maintenance.runner import RETRYABLE, Deadline, Session, attempt, lock_reason
from dbops.postgres.connection import ConnectionSpec, describe_error, server_version_num
from dbops.text import human_age, human_bytes

SKIP_LOCKED_SINCE = 120000
CONCURRENT_REINDEX_SINCE = 120000
LEFTOVER = re.compile(r"_cc(new|old)[0-9]*$")
LOCK_NOT_AVAILABLE = "55P03"

INVALID_INDEXES = sql.SQL("""
SELECT ic.oid, ic.relname FROM pg_index ix
JOIN pg_class ic ON ic.oid = ix.indexrelid
JOIN pg_class tc ON tc.oid = ix.indrelid
JOIN pg_namespace n ON n.oid = tc.relnamespace
WHERE n.nspname = %s AND tc.relname = %s AND NOT ix.indisvalid
""")


def _ignore(_: ProgressEvent) -> None:
    pass


# ---------------------------------------------------------------- planning


def plan_task(spec: ConnectionSpec, task: Task, config: MaintenanceConfig, *, database: str | None = None) -> Plan:
    """What `task` would do on the database now. Raises ConfigError (bad rule) before anything changes."""
    with Session(spec, config) as session:
        session.set_timeouts(config.lock_timeout_s, config.batch_statement_timeout_s)
        version = server_version_num(session.conn)
        found, notes = PLANNERS[task](session.conn, config, version)
    return Plan(
        task=task,
        database=database or spec.dbname,
        server_version=version,
        planned_at=datetime.now(UTC),
        objects=found,
        notes=notes,
    )


Planned = tuple[list[PlannedObject], list[str]]


def _plan_analyze(conn: psycopg.Connection[Any], config: MaintenanceConfig, version: int) -> Planned:
    found = []
    now = datetime.now(UTC)
    for t in objects.list_tables(conn, config.schemas):
        last = (
            f"last analyzed {human_age((now - t.last_analyze).total_seconds())} ago"
            if t.last_analyze
            else "never analyzed"
        )
        found.append(
            PlannedObject(
                kind="table",
                schema_name=t.table.schema,
                name=t.table.name,
                action="ANALYZE",
                reason=f"weekly statistics refresh; {last}, {t.modified_since_analyze} rows changed since",
            )
        )
    return found, []


def _plan_vacuum(conn: psycopg.Connection[Any], config: MaintenanceConfig, version: int) -> Planned:
    action = "VACUUM (ANALYZE, SKIP_LOCKED)" if version >= SKIP_LOCKED_SINCE else "VACUUM (ANALYZE)"
    tables = objects.list_tables(conn, config.schemas)
    found = []
    for t in tables:
        if t.dead < config.vacuum_min_dead_tuples:
            continue
        passed = []
        if t.dead_ratio >= config.vacuum_dead_ratio:
            passed.append(f"ratio ≥ {config.vacuum_dead_ratio:.0%}")
        if t.dead >= config.vacuum_dead_tuples:
            passed.append(f"count ≥ {config.vacuum_dead_tuples}")
        if passed:
            found.append(
                PlannedObject(
                    kind="table",
                    schema_name=t.table.schema,
                    name=t.table.name,
                    action=action,
                    reason=f"{t.dead} dead tuples, {t.dead_ratio:.1%} of {t.live + t.dead} ({', '.join(passed)})",
                )
            )
    notes = [
        f"{len(found)} of {len(tables)} tables past the thresholds (at least {config.vacuum_min_dead_tuples} dead "
        f"tuples and a dead ratio ≥ {config.vacuum_dead_ratio:.0%} or ≥ {config.vacuum_dead_tuples} dead tuples)"
    ]
    if version < SKIP_LOCKED_SINCE:
        notes.append("server before 12: no SKIP_LOCKED, a locked table waits at most lock_timeout")
    return found, notes


def _plan_reindex(conn: psycopg.Connection[Any], config: MaintenanceConfig, version: int) -> Planned:
    if version < CONCURRENT_REINDEX_SINCE:
        return [], ["REINDEX CONCURRENTLY needs PostgreSQL 12 or later; a blocking REINDEX is never run: nothing to do"]
    leftovers, rebuilds, no_estimate = [], [], 0
    indexes = objects.list_indexes(conn, config.schemas)
    for ix in indexes:
        exclusion = "exclusion constraint: cannot be rebuilt concurrently" if ix.constraint == "x" else None
        if not ix.valid and LEFTOVER.search(ix.name):
            running = "an index build is running on the table right now" if ix.build_running else None
            leftovers.append(
                _index_object(ix, "leftover", "invalid leftover of an interrupted REINDEX CONCURRENTLY", running)
            )
        elif not ix.valid:
            skip = "invalid index (a failed CREATE INDEX CONCURRENTLY?): rebuild or drop it by hand"
            rebuilds.append(_index_object(ix, "index", "invalid index", skip))
        elif config.reindex_mode == "full":
            rebuilds.append(_index_object(ix, "index", f"full pass, {human_bytes(ix.bytes)}", exclusion))
        elif ix.bloat_ratio is None:
            no_estimate += 1
        elif ix.bloat_ratio >= config.reindex_bloat_ratio and ix.bytes >= config.reindex_min_bytes:
            reason = f"estimated bloat {ix.bloat_ratio:.0%} of {human_bytes(ix.bytes)}"
            rebuilds.append(_index_object(ix, "index", reason, exclusion))
    notes = [f"{len(indexes)} indexes considered, mode {config.reindex_mode}"]
    if config.reindex_mode == "bloat":
        notes.append(
            f"bloat mode: B-tree indexes of at least {human_bytes(config.reindex_min_bytes)} estimated "
            f"≥ {config.reindex_bloat_ratio:.0%} bloated"
        )
        if no_estimate:
            notes.append(f"{no_estimate} indexes have no estimate (not B-tree, or never analyzed)")
    return leftovers + rebuilds, notes


def _index_object(ix: objects.IndexInfo, kind: ObjectKind, reason: str, skip: str | None) -> PlannedObject:
    action = "DROP INDEX CONCURRENTLY IF EXISTS" if kind == "leftover" else "REINDEX INDEX CONCURRENTLY"
    return PlannedObject(
        kind=kind,
        schema_name=ix.schema,
        name=ix.name,
        table=ix.table,
        action=action,
        reason=reason,
        skip_reason=skip,
    )


def _plan_rules(task: Task) -> Callable[[psycopg.Connection[Any], MaintenanceConfig, int], Planned]:
    def plan(conn: psycopg.Connection[Any], config: MaintenanceConfig, version: int) -> Planned:
        rules = config.rules_for(task)
        if not rules:
            return [], [f"no {task} rules configured"]
        notes: list[str] = []
        found = []
        for checked in check_rules(conn, rules):
            row = conn.execute("SELECT now() - %s::interval", [checked.rule.age]).fetchone()
            assert row is not None
            cutoff: datetime = row[0]
            counts = row_cleanup.estimate(conn, checked, cutoff)
            found.append(_rule_object(checked, cutoff, counts))
            notes.extend(_rule_notes(checked))
        return found, notes

    return plan


def _rule_object(checked: CheckedRule, cutoff: datetime, counts: dict[str, int | None]) -> PlannedObject:
    rule = checked.rule
    table = checked.table.display
    condition = f"{rule.timestamp_column} < {cutoff:%Y-%m-%d %H:%M:%S%z} (now - {rule.age})"
    if rule.keep:
        condition += f" AND NOT ({rule.keep})"
    shown = {t: ("?" if n is None else str(n)) for t, n in counts.items()}
    if checked.tree is not None:
        action = f"move to {checked.tree.archive.display} in batches of {rule.batch_size} rows of {table}"
        dependents = [f"{t} {n}" for t, n in shown.items() if t != table]
        reason = f"{shown[table]} rows of {table} where {condition}"
        if dependents:
            reason += f"; with the rows referencing them: {', '.join(dependents)} (each to its _archive table)"
    else:
        action = f"DELETE in batches of {rule.batch_size}"
        reason = f"{shown[table]} rows where {condition}"
    return PlannedObject(
        kind="rule",
        schema_name=checked.table.schema,
        name=checked.table.name,
        action=action,
        reason=reason,
        estimated_rows=counts[table],
        rule=rule,
        cutoff=cutoff,
    )


def _rule_notes(checked: CheckedRule) -> list[str]:
    notes = []
    rule = checked.rule
    if not checked.timestamp_indexed:
        notes.append(
            f"{checked.table.display}.{rule.timestamp_column} has no index: every batch scans the table; create one"
        )
    if checked.tree is None:
        for fk in checked.referenced_by:
            notes.append(f"{checked.table.display} is referenced by {fk.describe()}")
    else:
        for node in checked.tree.postorder():
            if node.via is not None and not node.via.indexed:
                notes.append(f"{node.via.describe()} has no index: every batch scans {node.table.display}")
            if not node.archive_exists:
                notes.append(f"{node.archive.display} will be created (same columns as {node.table.display})")
    return notes


PLANNERS: dict[Task, Callable[[psycopg.Connection[Any], MaintenanceConfig, int], Planned]] = {
    "analyze": _plan_analyze,
    "vacuum": _plan_vacuum,
    "reindex": _plan_reindex,
    "cleanup": _plan_rules("cleanup"),
    "archive": _plan_rules("archive"),
}


# ---------------------------------------------------------------- execution


@dataclass
class _Context:
    session: Session
    config: MaintenanceConfig
    progress: Progress
    deadline: Deadline
    checked: dict[str, CheckedRule]


def execute_plan(
    spec: ConnectionSpec,
    plan: Plan,
    config: MaintenanceConfig,
    *,
    progress: Progress | None = None,
    deadline: float | None = None,
) -> MaintenanceSummary:
    """Run a plan object by object; a failure on one object is recorded and the others still run."""
    started, t0 = datetime.now(UTC), time.monotonic()
    report = progress or _ignore
    results: list[ObjectResult] = []
    time_limit = Deadline(deadline)
    with Session(spec, config, time_limit) as session:
        rules = [o.rule for o in plan.objects if o.rule is not None]
        # checked again right before running: the schema may have changed since the plan was made
        checked = {c.rule.name: c for c in check_rules(session.conn, rules)} if rules else {}
        ctx = _Context(session, config, report, time_limit, checked)
        for obj in plan.objects:
            results.append(_execute_object(ctx, plan, obj))
    return MaintenanceSummary(
        task=plan.task,
        database=plan.database,
        started_at=started,
        duration_seconds=round(time.monotonic() - t0, 3),
        objects=results,
    )


def _execute_object(ctx: _Context, plan: Plan, obj: PlannedObject) -> ObjectResult:
    name = obj.rule.name if obj.rule is not None else obj.display
    if obj.skip_reason:
        return ObjectResult(kind=obj.kind, name=name, action=obj.action, status="skipped", detail=obj.skip_reason)
    if ctx.deadline.passed():
        return ObjectResult(
            kind=obj.kind, name=name, action=obj.action, status="skipped", detail="time limit reached before it began"
        )
    ctx.progress(ProgressEvent(event="start", object=name, message=f"{obj.action}: {obj.reason}"))
    t0 = time.monotonic()
    try:
        if obj.rule is not None:
            assert obj.cutoff is not None
            result = row_cleanup.run_rule(
                ctx.session, ctx.checked[obj.rule.name], obj.cutoff, ctx.config, ctx.progress, ctx.deadline
            )
        else:
            result = _run_statement_object(ctx, plan, obj, name)
    except (psycopg.Error, DbopsError) as exc:
        result = ObjectResult(
            kind=obj.kind,
            name=name,
            action=obj.action,
            status="failed",
            seconds=round(time.monotonic() - t0, 3),
            detail=str(exc),
        )
    ctx.progress(
        ProgressEvent(
            event="done",
            object=name,
            message=f"{result.status} in {result.seconds:.1f}s" + (f": {result.detail}" if result.detail else ""),
            rows=result.rows_deleted + result.rows_archived,
        )
    )
    return result


def _run_statement_object(ctx: _Context, plan: Plan, obj: PlannedObject, name: str) -> ObjectResult:
    session, config = ctx.session, ctx.config
    lock_s = config.reindex_lock_timeout_s if obj.kind in ("index", "leftover") else config.lock_timeout_s
    ident = sql.Identifier(obj.schema_name, obj.name)

    def analyze() -> None:
        session.set_timeouts(lock_s, config.statement_timeout_s)
        session.conn.execute(sql.SQL("ANALYZE {}").format(ident))

    def vacuum() -> None:
        session.set_timeouts(lock_s, config.statement_timeout_s)
        session.take_notices()
        options = "ANALYZE, SKIP_LOCKED" if plan.server_version >= SKIP_LOCKED_SINCE else "ANALYZE"
        session.conn.execute(sql.SQL("VACUUM ({}) {}").format(sql.SQL(options), ident))
        if any(sqlstate == LOCK_NOT_AVAILABLE for sqlstate, _ in session.take_notices()):
            raise LockUnavailable("another session holds a lock on the table (VACUUM SKIP_LOCKED passed it)")

    def drop_leftover() -> None:
        session.set_timeouts(lock_s, config.statement_timeout_s)
        session.conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(ident))

    def reindex() -> None:
        assert obj.table is not None
        session.set_timeouts(lock_s, config.statement_timeout_s)
        before = {r[0] for r in session.conn.execute(INVALID_INDEXES, [obj.schema_name, obj.table]).fetchall()}
        try:
            session.conn.execute(sql.SQL("REINDEX INDEX CONCURRENTLY {}").format(ident))
        except psycopg.Error as exc:
            left = _drop_own_leftovers(session, obj, before, lock_s, config)
            if not left:
                raise
            # retrying now would only add another leftover next to the one we could not drop
            leftover = (
                f"its invalid {', '.join(left)} could not be dropped yet (same wait): the next reindex run drops it"
            )
            if isinstance(exc, RETRYABLE):
                raise GiveUp("skipped", f"{lock_reason(exc, lock_s)}; {leftover}") from None
            raise GiveUp("failed", f"{describe_error(exc)}; {leftover}") from None

    run = {"leftover": drop_leftover, "index": reindex}.get(obj.kind) or (vacuum if plan.task == "vacuum" else analyze)
    t0 = time.monotonic()
    outcome = attempt(
        run, what=name, config=config, progress=ctx.progress, deadline=ctx.deadline, lock_timeout_s=lock_s
    )
    return ObjectResult(
        kind=obj.kind,
        name=name,
        action=obj.action,
        status=outcome.status,
        attempts=outcome.attempts,
        seconds=round(time.monotonic() - t0, 3),
        detail=outcome.detail,
    )


def _drop_own_leftovers(
    session: Session, obj: PlannedObject, before: set[int], lock_s: float, config: MaintenanceConfig
) -> list[str]:
    """A failed REINDEX CONCURRENTLY leaves its invalid new index behind: drop it now. Returns those still there."""
    left = []
    try:
        rows = session.conn.execute(INVALID_INDEXES, [obj.schema_name, obj.table]).fetchall()
    except psycopg.Error:
        return []  # the session is gone; the next plan finds any leftover by name
    for oid, name in rows:
        if oid in before or not LEFTOVER.search(name):
            continue
        try:
            session.set_timeouts(lock_s, config.statement_timeout_s)
            session.conn.execute(
                sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(obj.schema_name, name))
            )
        except psycopg.Error:
            left.append(name)
    return left


def run_task(
    spec: ConnectionSpec,
    task: Task,
    config: MaintenanceConfig,
    *,
    database: str | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
    deadline: float | None = None,
) -> MaintenanceSummary:
    """Plan `task`, then (unless dry_run) execute the plan. Raises ConfigError/DatabaseError before any change."""
    t0 = time.monotonic()
    plan = plan_task(spec, task, config, database=database)
    if dry_run:
        return planned_summary(plan, time.monotonic() - t0)
    return execute_plan(spec, plan, config, progress=progress, deadline=deadline)


def planned_summary(plan: Plan, seconds: float = 0.0) -> MaintenanceSummary:
    """A dry run's summary: every object as planned, nothing run."""
    return MaintenanceSummary(
        task=plan.task,
        database=plan.database,
        dry_run=True,
        started_at=plan.planned_at,
        duration_seconds=round(seconds, 3),
        objects=[
            ObjectResult(
                kind=o.kind,
                name=o.rule.name if o.rule is not None else o.display,
                action=o.action,
                status="skipped" if o.skip_reason else "planned",
                detail=o.skip_reason or o.reason,
            )
            for o in plan.objects
        ],
    )
