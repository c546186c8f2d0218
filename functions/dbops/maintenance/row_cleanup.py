"""cleanup and archive: a rule's rows deleted, or moved to archive tables, in small batches.

Each batch is one short transaction:
  1. lock the next `batch_size` rows the rule names, oldest first, `FOR UPDATE SKIP LOCKED` (a row the
     application is writing right now is left for a later batch instead of waited for);
  2. delete mode: delete them, in the same statement as 1;
     archive mode: move the rows that reference them through foreign keys, deepest first, each table with one
     `WITH moved AS (DELETE ... RETURNING ...) INSERT INTO <table>_archive SELECT ... FROM moved`; then the
     locked rows themselves the same way (locking them first also holds off new references to them);
  3. commit: a batch's inserts and deletes commit together, so a run killed at any moment loses no row and
     duplicates none (archive tables get the source's primary key, which would refuse a duplicate anyway);
     running again continues where it stopped.
Batches walk the timestamp forward (keyset), so kept rows are not scanned again by every batch; a last
pass from the oldest row picks up rows that were locked when their turn came.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from functools import partial
from typing import Any

import psycopg
from psycopg import sql

from dbops.config.maintenance import MaintenanceConfig
from dbops.maintenance.models import ObjectResult, Progress, ProgressEvent, Status
from dbops.maintenance.objects import find_relation
from dbops.maintenance.rules import CheckedRule, MoveNode, rule_predicate
from dbops.maintenance.runner import Deadline, Session, attempt

BY_CTID = sql.SQL("ctid = ANY(%(ctids)s::text[]::tid[])")


def batch_predicates(tree: MoveNode, root: sql.Composable) -> Iterator[tuple[MoveNode, sql.Composable]]:
    """(table, the condition naming its rows in the batch), referencing tables before referenced ones."""
    for child in tree.children:
        assert child.via is not None
        fk = child.via
        reference = sql.SQL("({}) IN (SELECT {} FROM {} WHERE {})").format(
            sql.SQL(", ").join(map(sql.Identifier, fk.child_columns)),
            sql.SQL(", ").join(map(sql.Identifier, fk.parent_columns)),
            tree.table.ident,
            root,
        )
        yield from batch_predicates(child, reference)
    yield tree, root


def estimate(conn: psycopg.Connection[Any], checked: CheckedRule, cutoff: datetime) -> dict[str, int | None]:
    """Rows the rule names now, per table (the rule's table first); None where counting timed out or waited."""
    tree = checked.tree
    targets = (
        list(reversed(list(batch_predicates(tree, rule_predicate(checked.rule)))))
        if tree is not None
        else [(None, rule_predicate(checked.rule))]
    )
    counts: dict[str, int | None] = {}
    for node, predicate in targets:
        table = node.table if node is not None else checked.table
        query = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(table.ident, predicate)
        try:
            row = conn.execute(query, {"cutoff": cutoff}).fetchone()
            counts[table.display] = int(row[0]) if row else 0
        except (psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable):
            counts[table.display] = None
    return counts


def run_rule(
    session: Session,
    checked: CheckedRule,
    cutoff: datetime,
    config: MaintenanceConfig,
    progress: Progress,
    deadline: Deadline,
) -> ObjectResult:
    rule = checked.rule
    mode_action = "archive" if rule.mode == "archive" else "delete"
    t0 = time.monotonic()
    moved: dict[str, int] = {}
    batches = attempts = 0
    status: Status = "done"
    detail: str | None = None

    def result() -> ObjectResult:
        total = sum(moved.values())
        return ObjectResult(
            kind="rule",
            name=rule.name,
            action=mode_action,
            status=status,
            attempts=attempts,
            seconds=round(time.monotonic() - t0, 3),
            rows_deleted=total if rule.mode == "delete" else 0,
            rows_archived=total if rule.mode == "archive" else 0,
            batches=batches,
            rows_by_table=moved,
            detail=detail,
        )

    if checked.tree is not None:
        created = attempt(
            partial(_create_archive_tables, session, checked.tree, config),
            what=rule.name,
            config=config,
            progress=progress,
            deadline=deadline,
        )
        attempts += created.attempts
        if created.status != "done":
            status, detail = created.status, f"archive tables not created: {created.detail}"
            return result()

    after: Any = None
    locked_passes = 0
    while True:
        if deadline.passed():
            status = "skipped"
            detail = f"time limit reached after {batches} batches (committed); the next run continues"
            return result()
        outcome = attempt(
            partial(_batch, session, checked, cutoff, after, config),
            what=rule.name,
            config=config,
            progress=progress,
            deadline=deadline,
        )
        attempts += outcome.attempts
        if outcome.status != "done" or outcome.value is None:
            status = outcome.status
            detail = f"{outcome.detail} (after {batches} committed batches)"
            return result()
        counts, last = outcome.value
        if not counts:
            if after is not None:
                after = None  # one more pass from the oldest row: rows locked when their turn came
                continue
            if not _remaining(session, checked, cutoff, config):
                return result()
            locked_passes += 1
            if locked_passes > config.lock_retries or deadline.passed():
                detail = "rows locked by other sessions the whole time were left for the next run"
                return result()
            progress(ProgressEvent(event="retry", object=rule.name, message="rows locked by other sessions: retry"))
            time.sleep(config.retry_delay_s)
            continue
        batches += 1
        for table, n in counts.items():
            moved[table] = moved.get(table, 0) + n
        after = last
        total = sum(moved.values())
        progress(
            ProgressEvent(
                event="batch",
                object=rule.name,
                message=f"batch {batches}: {sum(counts.values())} rows {mode_action}d, {total} so far",
                rows=total,
            )
        )
        if config.batch_pause_s:
            time.sleep(config.batch_pause_s)


def _batch(
    session: Session, checked: CheckedRule, cutoff: datetime, after: Any, config: MaintenanceConfig
) -> tuple[dict[str, int], Any]:
    """One transaction: lock the next rows, move or delete them (and what references them), commit.
    Returns rows per table and the newest timestamp handled (where the next batch starts)."""
    rule = checked.rule
    ts = sql.Identifier(rule.timestamp_column)
    predicate = rule_predicate(rule)
    if after is not None:
        predicate = sql.SQL("{} AND {} >= %(after)s").format(predicate, ts)
    params = {"cutoff": cutoff, "after": after, "n": rule.batch_size}
    pick = sql.SQL("SELECT {ctid} FROM {table} WHERE {p} ORDER BY {ts} LIMIT %(n)s FOR UPDATE SKIP LOCKED")
    conn = session.conn
    with conn.transaction():
        session.set_timeouts(config.lock_timeout_s, config.batch_statement_timeout_s, local=True)
        if checked.tree is None:
            # one statement: no round trip carrying the row addresses
            delete = sql.SQL(
                "WITH deleted AS (DELETE FROM {table} WHERE ctid = ANY(ARRAY({pick})) RETURNING {ts}) "
                "SELECT count(*), max({ts}) FROM deleted"
            ).format(
                table=checked.table.ident,
                pick=pick.format(ctid=sql.SQL("ctid"), table=checked.table.ident, p=predicate, ts=ts),
                ts=ts,
            )
            row = conn.execute(delete, params).fetchone()
            assert row is not None
            return ({checked.table.display: row[0]}, row[1]) if row[0] else ({}, None)
        rows = conn.execute(
            pick.format(ctid=sql.SQL("ctid::text, {}").format(ts), table=checked.table.ident, p=predicate, ts=ts),
            params,
        ).fetchall()
        if not rows:
            return {}, None
        by_ctid = {"ctids": [r[0] for r in rows]}
        counts: dict[str, int] = {}
        for node, where in batch_predicates(checked.tree, BY_CTID):
            cur = conn.execute(_move(node, where), by_ctid)
            counts[node.table.display] = counts.get(node.table.display, 0) + cur.rowcount
    return counts, max(r[1] for r in rows)


def _move(node: MoveNode, where: sql.Composable) -> sql.Composed:
    cols = sql.SQL(", ").join(map(sql.Identifier, node.columns))
    return sql.SQL(
        "WITH moved AS (DELETE FROM {table} WHERE {where} RETURNING {cols}) "
        "INSERT INTO {archive} ({cols}) SELECT {cols} FROM moved"
    ).format(table=node.table.ident, where=where, cols=cols, archive=node.archive.ident)


def _remaining(session: Session, checked: CheckedRule, cutoff: datetime, config: MaintenanceConfig) -> bool:
    session.set_timeouts(config.lock_timeout_s, config.batch_statement_timeout_s)
    query = sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE {})").format(
        checked.table.ident, rule_predicate(checked.rule)
    )
    row = session.conn.execute(query, {"cutoff": cutoff}).fetchone()
    return bool(row and row[0])


def _create_archive_tables(session: Session, tree: MoveNode, config: MaintenanceConfig) -> None:
    """`<table>_archive`: the same columns (CREATE TABLE ... LIKE: no foreign keys, no identity), the primary key."""
    conn = session.conn
    for node in tree.postorder():
        with conn.transaction():
            session.set_timeouts(config.lock_timeout_s, config.batch_statement_timeout_s, local=True)
            if find_relation(conn, node.archive) is not None:
                continue
            conn.execute(sql.SQL("CREATE TABLE {} (LIKE {})").format(node.archive.ident, node.table.ident))
            if node.primary_key:
                conn.execute(
                    sql.SQL("ALTER TABLE {} ADD PRIMARY KEY ({})").format(
                        node.archive.ident, sql.SQL(", ").join(map(sql.Identifier, node.primary_key))
                    )
                )
            comment = f"dbops archive of {node.table.display}: rows moved by the archive task, no foreign keys"
            conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(node.archive.ident, sql.Literal(comment)))
