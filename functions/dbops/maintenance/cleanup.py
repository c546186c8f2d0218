"""cleanup and archive: the retention rules, each planned with its cutoff and row counts, run in batches."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from dbops.config.maintenance import MaintenanceConfig, Task
from dbops.maintenance import row_cleanup
from dbops.maintenance.base import MaintenanceJob, Planned, RunContext
from dbops.maintenance.models import ObjectResult, Plan, PlannedObject
from dbops.maintenance.rules import CheckedRule, check_rules


class RuleJob(MaintenanceJob):
    """cleanup (the rules in delete mode) or archive (the rules in archive mode); see row_cleanup.py."""

    def __init__(self, task: Task) -> None:
        self.task = task

    def plan(self, conn: psycopg.Connection[Any], config: MaintenanceConfig, version: int) -> Planned:
        rules = config.rules_for(self.task)
        if not rules:
            return [], [f"no {self.task} rules configured"]
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

    def prepare(self, ctx: RunContext, plan: Plan) -> None:
        rules = [o.rule for o in plan.objects if o.rule is not None]
        # checked again right before running: the schema may have changed since the plan was made; with the
        # same lock timeout as when planning (checking a keep condition takes a lock on the rule's table)
        ctx.session.set_timeouts(ctx.config.lock_timeout_s, ctx.config.batch_statement_timeout_s)
        ctx.checked = {c.rule.name: c for c in check_rules(ctx.session.conn, rules)} if rules else {}

    def run(self, ctx: RunContext, plan: Plan, obj: PlannedObject) -> ObjectResult:
        assert obj.rule is not None and obj.cutoff is not None
        checked = ctx.checked[obj.rule.name]
        return row_cleanup.run_rule(ctx.session, checked, obj.cutoff, ctx.config, ctx.progress, ctx.deadline)


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
