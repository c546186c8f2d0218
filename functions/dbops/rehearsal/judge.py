"""From what a rehearsal saw to its result: each run's statements, locks and rewrites analysed, and the verdict.

One place for `dbops rehearse` (runner.py) and the restore state machine's `mode: rehearse` (deployed.py): both
hand over each run (the upgrade, the downgrade if it ran) with the watcher's observations and the relations before
and after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from statistics import mean

from dbops.backup.catalog import CatalogEntry
from dbops.rehearsal import advice, analysis, report, rewrites
from dbops.rehearsal.models import CommandRun, RehearsalRequest, RehearsalResult, Sampling, SchemaCheck, Timings
from dbops.rehearsal.rewrites import Relations
from dbops.rehearsal.watcher import Observations


@dataclass
class WatchedRun:
    """One run of the command or its rollback: how it ended, what the watcher saw, the relations around it."""

    run: CommandRun
    observations: Observations
    before: Relations
    after: Relations


@dataclass
class Scene:
    """Where the rehearsal happened and on what."""

    rehearsal_id: str
    server: str
    scratch_database: str
    scratch_dropped: bool
    entry: CatalogEntry | None
    server_major: int


def sampling(obs: Observations, interval: float) -> Sampling:
    return Sampling(
        interval_s=interval,
        samples=obs.samples,
        mean_gap_s=round(mean(obs.gaps), 4) if obs.gaps else 0.0,
        max_gap_s=round(max(obs.gaps), 4) if obs.gaps else 0.0,
        errors=obs.errors,
        last_error=obs.last_error,
    )


def _analyse(watched: WatchedRun, request: RehearsalRequest, major: int, *, upgrade: bool = True) -> analysis.Analysis:
    """The run's findings; the Alembic advice on transactions only for an upgrade whose env.py needs it."""
    return analysis.analyse(
        watched.observations,
        watched.before,
        watched.after,
        rewrites.rewritten(watched.before, watched.after),
        max_lock_s=request.max_lock_s,
        server_major=major,
        alembic_one_transaction=upgrade and advice.alembic_one_transaction(request.command, Path.cwd()),
    )


def judge(
    request: RehearsalRequest,
    scene: Scene,
    upgrade: WatchedRun,
    downgrade: WatchedRun | None,
    *,
    downgrade_command: list[str] | None,
    schema_check: SchemaCheck,
    revisions: dict[str, str | None],
    timings: Timings,
    stale: list[str],
) -> RehearsalResult:
    """The result, with every reason the rehearsal fails: the upgrade's locks and the downgrade's (a rollback
    in production holds them too) count against the same --max-lock."""
    found = _analyse(upgrade, request, scene.server_major)
    back = _analyse(downgrade, request, scene.server_major, upgrade=False) if downgrade is not None else None
    findings = list(found.findings)
    if back is not None:
        for finding in back.findings:
            finding.phase = "downgrade"
        findings += back.findings
    findings.sort(key=lambda f: ({"fail": 0, "warn": 1, "info": 2}[f.severity], -(f.lock_s or 0.0)))
    created, dropped = rewrites.created_and_dropped(upgrade.before, upgrade.after)
    reasons = report.verdict(
        upgrade=upgrade.run,
        downgrade=downgrade.run if downgrade else None,
        findings=findings,
        schema_check=schema_check,
        revision_before=revisions.get("before"),
        revision_after_downgrade=revisions.get("downgrade"),
        version_table_checked=request.version_table is not None,
        max_lock_s=request.max_lock_s,
        max_duration_s=request.max_duration_s,
    )
    entry = scene.entry
    return RehearsalResult(
        rehearsal_id=scene.rehearsal_id,
        database=request.database,
        server=scene.server,
        scratch_database=scene.scratch_database,
        scratch_dropped=scene.scratch_dropped,
        source=request.source,
        backup_id=entry.manifest.id if entry else None,
        backup_kind=entry.manifest.kind if entry else None,
        backup_finished_at=entry.manifest.finished_at if entry else None,
        command=request.command,
        downgrade_command=downgrade_command,
        revision_before=revisions.get("before"),
        revision_after_upgrade=revisions.get("upgrade"),
        revision_after_downgrade=revisions.get("downgrade"),
        upgrade=upgrade.run,
        downgrade=downgrade.run if downgrade else None,
        statements=found.statements,
        statements_omitted=found.omitted,
        rewrites=found.rewrites,
        downgrade_statements=back.statements if back else [],
        downgrade_rewrites=back.rewrites if back else [],
        created=created,
        dropped=dropped,
        schema_check=schema_check,
        findings=findings,
        max_lock_s=request.max_lock_s,
        max_duration_s=request.max_duration_s,
        sampling=sampling(upgrade.observations, request.interval_s),
        timings=timings,
        stale_dropped=stale,
        verdict="fail" if reasons else "pass",
        reasons=reasons,
    )
