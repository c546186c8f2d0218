"""The Finish and NotifyFailure steps: a restore's outcome described, recorded in the bucket and notified."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dbops.aws import sns
from dbops.config.durations import format_duration
from dbops.errors import DbopsError
from dbops.restore import databases, expired_copies, records
from dbops.restore.connections import server_spec
from dbops.restore.models import RestoreState
from dbops.settings import FunctionSettings
from dbops.text import plural


def elapsed(state: RestoreState) -> float:
    return round((datetime.now(UTC) - (state.started_at or datetime.now(UTC))).total_seconds(), 3)


def _record(state: RestoreState, settings: FunctionSettings, ok: bool, detail: str) -> None:
    if state.database is None:
        return
    now = datetime.now(UTC)
    keep = state.pre_restore_db if ok and state.swapped else None
    records.save(
        settings.bucket,
        records.RestoreRecord(
            restore_id=state.restore_id,
            kind=state.record_kind,
            database=state.database,
            backup_id=state.backup_id,
            target_db=state.target_db,
            tables=[t.qualified for t in state.tables],
            ok=ok,
            started_at=state.started_at or now,
            finished_at=now,
            seconds=elapsed(state),
            detail=detail,
            pre_restore_db=keep,
            keep_until=now + timedelta(days=settings.pre_restore_keep_days) if keep else None,
            swap_pause_s=state.swap_pause_s,
            work_db=state.work_db,
        ),
    )


def describe(state: RestoreState) -> str:
    what = (
        f"{plural(len(state.tables), 'table')} ({', '.join(t.qualified for t in state.tables)})"
        if state.selective
        else "the whole database"
    )
    source = f"backup {state.backup_id}"
    if state.request.as_of is not None:
        as_of = state.request.as_of.astimezone(UTC)
        moment = as_of.isoformat(timespec="seconds" if as_of.microsecond == 0 else "auto")
        source = f"as of {moment} ({state.temporary_instance}" + (
            f", dump {state.backup_id})" if state.backup_id else ")"
        )
    if state.drill:
        return f"{source}: {what} restored into {state.work_db}, checked and dropped"
    if state.request.as_of is not None:
        return f"{source}: {what} into {state.target_db}"
    return f"{source} ({state.backup_kind}): {what} into {state.target_db}"


def finish(state: RestoreState, settings: FunctionSettings) -> RestoreState:
    """Success: drop the scratch copy, record the result, notify."""
    req = state.request
    if req.dry_run:
        outcome = f"dry run, nothing changed: would restore {describe(state)}"
        if state.target_existed and not state.drill:
            outcome += f"; a safety backup of {state.target_db} would be taken first"
        if state.pre_restore_db:
            outcome += f"; the current database would be kept as {state.pre_restore_db}"
    else:
        if (state.selective or state.drill) and state.work_db:
            databases.drop(server_spec(state, settings), state.work_db)
        outcome = f"{'drill passed' if state.drill else 'restored'}: {describe(state)} in {elapsed(state):.1f}s"
        if state.pre_restore_db:
            outcome += f"; previous database kept as {state.pre_restore_db} for {settings.pre_restore_keep_days} days"
        if state.refreshed_views:
            outcome += f"; materialized views refreshed: {', '.join(state.refreshed_views)}"
        if state.swap_pause_s is not None:
            outcome += (
                f"; writes to the restored tables paused {format_duration(state.swap_pause_s)} "
                f"(locks taken on attempt {state.swap_lock_attempts})"
            )
        _record(state, settings, True, outcome)
        expired_copies.drop(settings, str(state.database))
    sns.notify(
        settings.topic_arn,
        f"dbops {req.mode} {'succeeded' if not req.dry_run else 'dry run'}: {state.database}",
        outcome,
    )
    return state.model_copy(update={"outcome": outcome})


def notify_failure(state: RestoreState, settings: FunctionSettings) -> RestoreState:
    reason = state.error.message() if state.error else "unknown error"
    name = state.database or state.request.database or "/".join(d.name for d in settings.databases)
    outcome = f"{state.request.mode} of {name} failed: {reason}"
    if state.work_db and state.database:
        outcome += f"; target {state.target_db} left as it was" if state.target_db else ""
    try:
        _record(state, settings, False, outcome)
    except DbopsError:
        pass  # the notification below still goes out
    sns.notify(settings.topic_arn, f"dbops {state.request.mode} FAILED: {state.database}", outcome)
    return state.model_copy(update={"outcome": outcome})
