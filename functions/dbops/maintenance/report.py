"""Plans and summaries as text for people (the CLI, the demo); the models themselves are the JSON form."""

from __future__ import annotations

from dbops.maintenance.models import MaintenanceSummary, Plan
from dbops.text import table_lines


def _version(num: int) -> str:
    return f"{num // 10000}.{num % 10000}"


def format_plan(plan: Plan) -> str:
    count = len(plan.objects)
    lines = [
        f"plan: {plan.task} on {plan.database} (PostgreSQL {_version(plan.server_version)}), "
        f"{count} object{'s' if count != 1 else ''}"
    ]
    if plan.objects:
        rows = []
        for o in plan.objects:
            why = o.reason + (f" — will be skipped: {o.skip_reason}" if o.skip_reason else "")
            rows.append([o.kind, o.rule.name if o.rule else o.display, o.action, why])
        lines += ["  " + line for line in table_lines(["KIND", "OBJECT", "ACTION", "WHY"], rows)]
    lines += [f"  note: {n}" for n in plan.notes]
    return "\n".join(lines)


def format_summary(summary: MaintenanceSummary) -> str:
    head = (
        f"{summary.task} on {summary.database}{' (dry run)' if summary.dry_run else ''}: "
        f"{summary.done} done, {summary.skipped} skipped, {summary.failed} failed; "
        f"{summary.rows_deleted} rows deleted, {summary.rows_archived} rows archived; "
        f"{summary.duration_seconds:.2f}s"
    )
    lines = [head]
    if summary.error:
        lines.append(f"  error: {summary.error}")
    if summary.objects:
        rows = [
            [
                o.status,
                o.name,
                o.action,
                str(o.rows_deleted + o.rows_archived) if o.kind == "rule" else "",
                f"{o.seconds:.2f}s",
                ", ".join(f"{t} {n}" for t, n in o.rows_by_table.items()) if len(o.rows_by_table) > 1 else "",
                o.detail or "",
            ]
            for o in summary.objects
        ]
        headers = ["STATUS", "OBJECT", "ACTION", "ROWS", "TIME", "BY TABLE", "DETAIL"]
        lines += ["  " + line for line in table_lines(headers, rows)]
    return "\n".join(lines)
