"""The verdict, with every reason it failed, and the report people read (the JSON is RehearsalResult itself).

The rehearsal fails when: the upgrade failed or ran past --max-duration; a lock that blocks the application was
held longer than --max-lock; the downgrade failed or ran past --max-duration; the schema after the downgrade
differs from the schema before the upgrade; the downgrade ended at another revision than the one it started from.
"""

from __future__ import annotations

import textwrap

from dbops.config.durations import format_duration
from dbops.rehearsal.advice import sql_name, strength
from dbops.rehearsal.models import (
    CommandRun,
    Finding,
    RehearsalResult,
    RewrittenTable,
    SchemaCheck,
    StatementResult,
)
from dbops.text import human_bytes, table_lines

WIDTH = 118
SHOWN_STATEMENTS = 15
SHOWN_CHANGES = 12
SHOWN_LINES = 8  # of each object's definition
OUTPUT_LINES = 20


def _run_problem(run: CommandRun, what: str, max_duration_s: float) -> str | None:
    if run.error:
        return f"the {what} could not start: {run.error}"
    if run.timed_out:
        return f"the {what} ran longer than --max-duration {format_duration(max_duration_s)} and was stopped"
    if run.exit_code is not None and run.exit_code < 0:
        return f"the {what} was killed by signal {-run.exit_code}"
    if run.exit_code != 0:
        return f"the {what} failed (exit {run.exit_code})"
    return None


def verdict(
    *,
    upgrade: CommandRun,
    downgrade: CommandRun | None,
    findings: list[Finding],
    schema_check: SchemaCheck,
    revision_before: str | None,
    revision_after_downgrade: str | None,
    version_table_checked: bool,
    max_lock_s: float,
    max_duration_s: float,
) -> list[str]:
    """Every reason the rehearsal fails, one line each; none: it passes."""
    reasons = []
    if problem := _run_problem(upgrade, "upgrade", max_duration_s):
        reasons.append(problem)
    for f in findings:
        if f.severity == "fail" and f.mode and f.lock_s is not None:
            by = "the downgrade's" if f.phase == "downgrade" else "by:"
            reasons.append(
                f"{sql_name(f.mode)} on {f.table} held {format_duration(f.lock_s)} (limit "
                f"{format_duration(max_lock_s)}) {by} {f.statement}"
            )
    if downgrade is not None:
        if problem := _run_problem(downgrade, "downgrade", max_duration_s):
            reasons.append(problem)
        elif schema_check.identical is False:
            shown = "; ".join(schema_check.changes[:3])
            more = f" and {len(schema_check.changes) - 3} more" if len(schema_check.changes) > 3 else ""
            reasons.append(f"the downgrade left the schema different from before the upgrade: {shown}{more}")
        if downgrade.ok and version_table_checked and revision_after_downgrade != revision_before:
            reasons.append(
                f"the downgrade ended at revision {revision_after_downgrade or 'none'}, not at "
                f"{revision_before or 'none'} where the upgrade started"
            )
    return reasons


def _command(argv: list[str] | None) -> str:
    return " ".join(argv) if argv else "-"


def _run_line(run: CommandRun | None, what: str) -> str:
    if run is None:
        return f"{what}: not run"
    state = "ok" if run.ok else (run.error or ("stopped (time limit)" if run.timed_out else f"exit {run.exit_code}"))
    return f"{what} {format_duration(run.seconds)} {state}"


def _lock_text(s: StatementResult) -> str:
    blocking = [h for h in s.locks if h.blocking]
    if not blocking:
        return "-"
    top = max(blocking, key=lambda h: h.held_s)
    return f"{format_duration(top.held_s)}±{format_duration(top.uncertainty_s)}"


def _tables_text(s: StatementResult, rewritten: set[str]) -> tuple[str, str]:
    """(strongest mode, its tables with sizes), for the statement's locks on tables that existed."""
    existing = [h for h in s.locks if h.relation.existed_before]
    if not existing:
        return (sql_name(s.strongest_mode) if s.strongest_mode else "-", "-")
    strongest = max(existing, key=lambda h: (h.blocking, h.held_s))
    tables: dict[str, str] = {}
    for h in existing:
        if h.mode == strongest.mode and h.relation.table not in tables:
            mark = "*" if h.relation.table in rewritten else ""
            tables[h.relation.table] = f"{h.relation.table}{mark} ({human_bytes(h.relation.bytes)}"
    for table in tables:
        notes = {h.relation.storage for h in existing if h.relation.table == table and h.relation.storage}
        new = any(note.startswith("its new") for note in notes)
        tables[table] += ", and its new storage)" if new else ", and its TOAST)" if notes else ")"
    return sql_name(strongest.mode), ", ".join(tables.values())


def _worth_showing(s: StatementResult, interval_s: float) -> bool:
    """A statement that held more than the locks of plain reads and writes, or ran longer than the interval."""
    return s.duration_s >= interval_s or any(strength(h.mode) >= strength("ShareUpdateExclusiveLock") for h in s.locks)


def _wrap(text: str, indent: str, then: str | None = None) -> list[str]:
    """`text` wrapped to the report's width: its first line after `indent`, the others after `then` (default the
    same width of spaces)."""
    rest = " " * len(indent) if then is None else then
    return textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=rest) or [indent]


def _statements_table(
    title: str, statements: list[StatementResult], rewrites: list[RewrittenTable], omitted: int, interval_s: float
) -> list[str]:
    rewritten = {t.table for t in rewrites if t.table_rewritten}
    shown = [s for s in statements if _worth_showing(s, interval_s)][:SHOWN_STATEMENTS]
    if not shown:
        return []
    lines = ["", title]
    rows = []
    for s in shown:
        mode, tables = _tables_text(s, rewritten)
        duration = format_duration(s.duration_s) + ("" if s.duration_exact else "~")
        rows.append([_lock_text(s), mode, tables, duration, s.query[:70]])
    lines += ["  " + line for line in table_lines(["LOCK", "MODE", "TABLES", "RAN", "STATEMENT"], rows)]
    if rewritten:
        lines.append("  * rewritten (new storage: its relfilenode changed)")
    hidden = len(statements) + omitted - len(shown)
    if hidden > 0:
        lines.append(f"  and {hidden} more (short, plain reads and writes): see --json")
    return lines


def format_report(r: RehearsalResult) -> str:
    lines = [f"Rehearsal of `{_command(r.command)}` on {r.database}: {r.verdict.upper()}"]
    if r.source == "backup":
        taken = r.backup_finished_at.strftime("%Y-%m-%d %H:%M UTC") if r.backup_finished_at else "?"
        source = f"backup {r.backup_id} ({r.backup_kind}, taken {taken})"
    else:
        source = f"a fresh pg_dump of {r.database}"
    kept = "dropped" if r.scratch_dropped else "NOT dropped"
    lines += _wrap(f"from {source}, restored into {r.scratch_database} on {r.server} ({kept})", "  ", "    ")
    if r.revision_before is not None or r.revision_after_upgrade is not None:
        revisions = f"  revision {r.revision_before or 'none'} -> {r.revision_after_upgrade or 'none'}"
        if r.downgrade is not None:
            revisions += f" -> {r.revision_after_downgrade or 'none'} after the downgrade"
        lines.append(revisions)
    lines.append(f"  downgrade: `{_command(r.downgrade_command)}`" if r.downgrade_command else "  downgrade: skipped")
    schema = (
        "identical to before the upgrade"
        if r.schema_check.identical
        else "DIFFERENT from before the upgrade"
        if r.schema_check.compared
        else "not compared"
    )
    lines.append(f"  {_run_line(r.upgrade, 'upgrade')}; {_run_line(r.downgrade, 'downgrade')}; schema: {schema}")

    if r.reasons:
        lines += ["", "Why it failed:"]
        for reason in r.reasons:
            lines += _wrap(reason, "  - ")

    lines += _statements_table(
        "Statements by lock time (LOCK: the longest lock blocking the application's reads or writes):",
        r.statements,
        r.rewrites,
        r.statements_omitted,
        r.sampling.interval_s,
    )
    downgrade = "The downgrade's statements by lock time:"
    lines += _statements_table(downgrade, r.downgrade_statements, r.downgrade_rewrites, 0, r.sampling.interval_s)

    if r.findings:
        lines += ["", "Findings and what to do:"]
        for f in r.findings:
            phase = " (downgrade)" if f.phase == "downgrade" else ""
            lines += _wrap(f"[{f.severity.upper()}]{phase} {f.what}", "  ", "         ")
            if f.statement:
                by = "" if f.taken_by_statement else "taken in the transaction of (maybe by an earlier, shorter one): "
                lines += _wrap(by + f.statement, "         ")
            lines += _wrap(f"-> {f.advice}", "         ", "            ")
            lines.append("")
        lines.pop()

    if r.rewrites or r.created or r.dropped:
        lines.append("")
    for rw in r.rewrites:
        what = "rewritten" if rw.table_rewritten else "indexes rebuilt"
        after = human_bytes(rw.bytes_after) if rw.bytes_after is not None else "?"
        indexes = f", indexes {', '.join(rw.indexes)}" if rw.indexes else ""
        lines += _wrap(f"{what}: {rw.table} ({human_bytes(rw.bytes_before)} -> {after}){indexes}", "", "  ")
    if r.created:
        lines += _wrap("created: " + ", ".join(r.created), "", "  ")
    if r.dropped:
        lines += _wrap("dropped: " + ", ".join(r.dropped), "", "  ")

    if r.schema_check.compared and not r.schema_check.identical:
        lines += ["", "Schema after the downgrade vs before the upgrade:"]
        objects = r.schema_check.objects
        for o in objects[:SHOWN_CHANGES]:
            lines += _wrap(f"{o.change} {o.object}", "  ", "    ")
            lines += ["      " + line[: WIDTH - 6] for line in o.lines[:SHOWN_LINES]]
            if len(o.lines) > SHOWN_LINES:
                lines.append(f"      and {len(o.lines) - SHOWN_LINES} more lines")
        if not objects:
            lines += ["  " + c for c in r.schema_check.changes[:SHOWN_CHANGES]]
        if len(objects) > SHOWN_CHANGES:
            lines.append(f"  and {len(objects) - SHOWN_CHANGES} more objects (the diff is in --json)")

    for run, what in ((r.upgrade, "upgrade"), (r.downgrade, "downgrade")):
        if run is not None and not run.ok and run.output_tail:
            lines += ["", f"The {what}'s last output:"]
            lines += ["  | " + line for line in run.output_tail.splitlines()[-OUTPUT_LINES:]]

    t = r.timings
    lines += [
        "",
        f"Took {format_duration(t.total_s)}: restore {format_duration(t.restore_s)}, vacuum/analyze "
        f"{format_duration(t.vacuum_analyze_s)}, schema dumps {format_duration(t.schema_s)}, upgrade "
        f"{format_duration(t.upgrade_s)}, downgrade {format_duration(t.downgrade_s)}, drop {format_duration(t.drop_s)}",
        f"Sampled every {format_duration(r.sampling.interval_s)}: {r.sampling.samples} samples, gaps "
        f"{format_duration(r.sampling.mean_gap_s)} on average, {format_duration(r.sampling.max_gap_s)} at most"
        + (f"; {r.sampling.errors} failed ({r.sampling.last_error})" if r.sampling.errors else ""),
    ]
    if r.stale_dropped:
        lines += _wrap("dropped scratch databases of rehearsals that died: " + ", ".join(r.stale_dropped), "")
    return "\n".join(lines)
