"""The restore state machine's `mode: rehearse`: a rehearsal a deploy pipeline starts before it migrates production.

    {"mode": "rehearse", "database": "sprint_reports_v2", "backup": "latest", "max_lock": "5s"}

The application's own migration image runs as an ECS Fargate task against a scratch copy of the backup, with a
dbops watcher container beside it; the steps around it are Lambda functions (handlers/rehearsal.py):

  PrepareRehearsal   the backup chosen and restored into `<db>__rehearse_<id>` (marked with the execution ARN: the
                     sweep leaves it while the execution runs), VACUUM (ANALYZE); a backup too large for Lambda is
                     restored by the Fargate stage task instead (FillOnFargate, as a restore's stage)
  SurveyScratch      the revision, the schema and the relations saved to the bucket; a temporary role (access.py)
                     whose URL goes into the database's rehearsal secret, which the task definition names
  RunMigration       the task (upgrade; then the downgrade, the same task definition with the rollback command)
  AfterRun           the run's end read from the task (exit code, time limit), sessions it left ended, the
                     relations after it saved; next: the downgrade, or the judgement
  JudgeRehearsal     the watcher's observations and the relations analysed (judge.py), the schema compared, the
                     result and its report saved to the bucket, SNS notified with the verdict, metrics; the scratch
                     database and the role dropped, the secret emptied
  RehearsalCleanup   after an error in any step: the same drop, and SNS told why

The execution succeeds whenever the rehearsal was carried out, its output holding the verdict (`verdict`, `summary`:
the reasons, `result_key`); it fails (RehearsalError) only when a step could not be completed: that is what the
restore state machine's failure alarm is for. `dbops rehearse --deployed` exits 1 on either.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from dbops.aws import s3stream, sns
from dbops.backup.catalog import CatalogEntry, find_backup
from dbops.config.databases import DatabaseConfig, RehearsalConfig
from dbops.errors import ConfigError, RehearsalRefused
from dbops.postgres.connection import ConnectionSpec, connect, database_spec, server_version_num
from dbops.postgres.tools import server_major
from dbops.rehearsal import access, artifacts, report, rewrites, schema, scratch, source, task_run
from dbops.rehearsal.command import database_url, default_downgrade
from dbops.rehearsal.deployed_state import Phase, RehearsalState
from dbops.rehearsal.judge import Scene, WatchedRun, judge
from dbops.rehearsal.models import RehearsalResult, SchemaCheck
from dbops.rehearsal.runner import end_command_sessions, read_revision
from dbops.rehearsal.watcher import Observations
from dbops.settings import FunctionSettings

# the role's password outlives the runs by this much (the judgement and a slow cleanup)
ROLE_GRACE = timedelta(minutes=30)


def _database(state: RehearsalState, settings: FunctionSettings) -> tuple[DatabaseConfig, RehearsalConfig]:
    config = settings.database(state.request.database)
    if config.rehearsal is None:
        raise ConfigError(
            f"database {config.name} has no rehearsal settings (databases[].rehearsal in cdk.json: the migration "
            "image and its command)"
        )
    return config, config.rehearsal


def _scratch_spec(state: RehearsalState, settings: FunctionSettings) -> tuple[ConnectionSpec, ConnectionSpec]:
    """(the production database's spec, the scratch database's spec), both as dbops' own user."""
    config, _ = _database(state, settings)
    spec = database_spec(config)
    assert state.scratch_database is not None
    return spec, spec.for_database(state.scratch_database)


def _watch_orders(state: RehearsalState, settings: FunctionSettings) -> str:
    assert state.rehearsal is not None
    return json.dumps(
        {
            "bucket": settings.bucket,
            "key": state.artifact(f"observations-{state.phase}.json"),
            "interval_s": state.rehearsal.interval_s,
            "max_s": state.rehearsal.max_duration_s,
        }
    )


def _running_rehearsal(spec: ConnectionSpec, database: str) -> str | None:
    """A scratch database of `database` whose execution still runs: the rehearsal secret is one per database."""
    for listed in scratch.listed(spec):
        execution = listed.execution
        if listed.marker.get("source_database") != database or execution is None:
            continue
        if scratch.execution_running(execution) is not False:
            return f"{listed.name} (execution {execution})"
    return None


def prepare(state: RehearsalState, settings: FunctionSettings) -> RehearsalState:
    """PrepareRehearsal: what can be refused before anything is made, then the scratch database, empty; it is
    filled here (`fill`) unless the backup is too large for the function, then by the Fargate task. An unknown
    database, or one without rehearsal settings, is the request's fault: RehearsalRefused, as for what follows."""
    try:
        config, rehearsal = _database(state, settings)
    except ConfigError as exc:
        raise RehearsalRefused(str(exc)) from None
    request = state.request.rehearsal_request(config, rehearsal)
    downgrade = None if request.skip_downgrade else request.downgrade or default_downgrade(request.command, "x")
    if not request.skip_downgrade and downgrade is None:
        raise RehearsalRefused(
            f"cannot tell how to roll back `{' '.join(request.command)}` (not an `alembic ... upgrade`): give "
            "downgrade, or skip_downgrade"
        )
    spec = database_spec(config)
    entry = source.choose_backup(settings.bucket, request.backup, request.kind, config.name)
    source.check_versions(entry, spec, settings.pg_bin_dir)
    busy = _running_rehearsal(spec, config.name)
    if busy:
        raise RehearsalRefused(f"another rehearsal of {config.name} is running: {busy}; one at a time")
    scratch.drop_stale(spec)
    rehearsal_id, name, _ = scratch.create(spec, config.name, execution=state.execution, backup_id=entry.manifest.id)
    state = state.model_copy(
        update={
            "rehearsal": request,
            "rehearsal_id": rehearsal_id,
            "scratch_database": name,
            "backup_id": entry.manifest.id,
            "fill_on_fargate": entry.manifest.dump.raw_size > settings.fargate_threshold_bytes,
        }
    )
    return state if state.fill_on_fargate else fill(state, settings)


def fill(state: RehearsalState, settings: FunctionSettings) -> RehearsalState:
    """The backup restored into the scratch database, then VACUUM (ANALYZE): statistics and visibility as
    production has them. In PrepareRehearsal, or in the Fargate task (`fill_rehearsal`) for a large backup."""
    _, box = _scratch_spec(state, settings)
    entry = _entry(settings, state.backup_id)
    assert entry is not None
    t = datetime.now(UTC)
    jobs, folder = settings.restore_jobs, settings.work_dir
    source.restore_backup(settings.bucket, entry, box, pg_bin_dir=settings.pg_bin_dir, jobs=jobs, folder=folder)
    with connect(box, statement_timeout_ms=0) as conn:
        conn.execute("VACUUM (ANALYZE)")
    return state.model_copy(update={"timings": state.timings.model_copy(update={"restore_s": _since(t)})})


def survey(state: RehearsalState, settings: FunctionSettings) -> RehearsalState:
    """SurveyScratch: the filled scratch database's revision, schema and relations saved; the temporary role made
    and its URL put in the rehearsal secret; the first run (the upgrade) set up."""
    config, rehearsal = _database(state, settings)
    _, box = _scratch_spec(state, settings)
    request = state.rehearsal
    assert request is not None and state.rehearsal_id is not None
    with connect(box) as conn:
        major = server_major(server_version_num(conn))
    before = read_revision(box, request.version_table)
    argv = None if request.skip_downgrade else request.downgrade or default_downgrade(request.command, before)
    if argv is None and not request.skip_downgrade:
        raise RehearsalRefused(f"the database is at several revisions ({before}): give downgrade")
    schema_before = schema.dump_schema(box, settings.pg_bin_dir, request.version_table)
    s3stream.put_text(settings.bucket, state.artifact("schema-before.sql"), schema_before)
    artifacts.save_relations(settings.bucket, state.artifact("relations-before.json"), rewrites.snapshot(box))
    valid_for = timedelta(seconds=2 * request.max_duration_s) + ROLE_GRACE
    login = access.create_role(box, config.name, state.rehearsal_id, valid_for)
    access.publish_url(rehearsal.secret_id, database_url(login))
    state = state.model_copy(
        update={
            "server_major": major,
            "revisions": {"before": before},
            "downgrade_command": argv,
            "phase": "upgrade",
            "run_command": request.command,
            "run_timeout_s": max(1, round(request.max_duration_s)),
            "next": "run",
        }
    )
    return state.model_copy(update={"watch": _watch_orders(state, settings)})


def _since(t: datetime) -> float:
    return round((datetime.now(UTC) - t).total_seconds(), 3)


def after_run(state: RehearsalState, settings: FunctionSettings) -> RehearsalState:
    """AfterRun (see the module's docstring)."""
    _, box = _scratch_spec(state, settings)
    request = state.rehearsal
    assert request is not None
    run = task_run.run_of(state)
    end_command_sessions(box, [], 0.0 if run.timed_out else 5.0)
    artifacts.save_relations(settings.bucket, state.artifact(f"relations-{state.phase}.json"), rewrites.snapshot(box))
    revisions = {**state.revisions, state.phase: read_revision(box, request.version_table)}
    timings = state.timings.model_copy(update={f"{state.phase}_s": run.seconds})
    update: dict[str, Any] = {
        "runs": {**state.runs, state.phase: run},
        "revisions": revisions,
        "timings": timings,
        "task": None,
        "task_error": None,
        "next": "judge",
    }
    if state.phase == "upgrade" and run.ok and state.downgrade_command:
        update |= {"phase": "downgrade", "run_command": state.downgrade_command, "next": "run"}
    done = state.model_copy(update=update)
    return done.model_copy(update={"watch": _watch_orders(done, settings)})


def _observations(state: RehearsalState, settings: FunctionSettings, phase: Phase) -> Observations:
    found = artifacts.load_observations(settings.bucket, state.artifact(f"observations-{phase}.json"))
    if found is not None:
        return found
    return Observations([], [], [], 0, [], 1, "the watcher left no observations of this run", None)


def _watched(state: RehearsalState, settings: FunctionSettings, phase: Phase, before: str) -> WatchedRun:
    return WatchedRun(
        state.runs[phase],
        _observations(state, settings, phase),
        artifacts.load_relations(settings.bucket, state.artifact(before)),
        artifacts.load_relations(settings.bucket, state.artifact(f"relations-{phase}.json")),
    )


def judge_rehearsal(state: RehearsalState, settings: FunctionSettings) -> tuple[RehearsalState, RehearsalResult]:
    """JudgeRehearsal (see the module's docstring); returns the state and the result."""
    config, rehearsal = _database(state, settings)
    spec, box = _scratch_spec(state, settings)
    request = state.rehearsal
    assert request is not None and state.rehearsal_id is not None and state.scratch_database is not None
    upgrade = _watched(state, settings, "upgrade", "relations-before.json")
    downgrade = _watched(state, settings, "downgrade", "relations-upgrade.json") if "downgrade" in state.runs else None
    check = SchemaCheck(compared=False)
    if downgrade is not None and downgrade.run.ok:
        before = s3stream.get_text(settings.bucket, state.artifact("schema-before.sql")) or ""
        check = schema.compare(before, schema.dump_schema(box, settings.pg_bin_dir, request.version_table))
    _drop(spec, state.scratch_database, rehearsal)
    entry = _entry(settings, state.backup_id)
    timings = state.timings.model_copy(update={"total_s": _since(state.started_at)})
    scene = Scene(
        rehearsal_id=state.rehearsal_id,
        server=f"{spec.host}:{spec.port}",
        scratch_database=state.scratch_database,
        scratch_dropped=True,
        entry=entry,
        server_major=state.server_major or 0,
    )
    result = judge(
        request,
        scene,
        upgrade,
        downgrade,
        downgrade_command=state.downgrade_command,
        schema_check=check,
        revisions=state.revisions,
        timings=timings,
        stale=[],
    )
    text = report.format_report(result)
    result_key, report_key = state.artifact("result.json"), state.artifact("report.txt")
    s3stream.put_json(settings.bucket, result_key, result.model_dump_json(indent=2))
    s3stream.put_text(settings.bucket, report_key, text)
    summary = "; ".join(result.reasons) or "passed"
    sns.notify(
        settings.topic_arn,
        f"dbops rehearsal {result.verdict.upper()}: {config.name}",
        f"{text}\n\nResult: s3://{settings.bucket}/{result_key}\nExecution: {state.execution}",
    )
    done = state.model_copy(
        update={
            "verdict": result.verdict,
            "summary": summary[:30000],
            "result_key": result_key,
            "report_key": report_key,
            "timings": timings,
        }
    )
    return done, result


def _entry(settings: FunctionSettings, backup_id: str | None) -> CatalogEntry | None:
    return find_backup(settings.bucket, backup_id) if backup_id else None


def _drop(spec: ConnectionSpec, name: str, rehearsal: RehearsalConfig) -> None:
    """The scratch database and its role dropped, the secret emptied (the role's password is useless by then)."""
    scratch.drop(spec, name)
    access.withdraw_url(rehearsal.secret_id)


def clean_up(state: RehearsalState, settings: FunctionSettings) -> RehearsalState:
    """RehearsalCleanup: after a step failed, the scratch database and role dropped, and SNS told why."""
    reason = state.error.message() if state.error else "unknown error"
    name = state.request.database or "/".join(d.name for d in settings.databases)
    try:
        config: DatabaseConfig | None = settings.database(state.request.database)
    except ConfigError:  # the refusal being reported: nothing was made
        config = None
    if config is not None and config.rehearsal is not None:
        # the Catch hands on the failed step's input: a database PrepareRehearsal made before failing is found by
        # the execution its marker names
        spec = database_spec(config)
        made = set(scratch.of_execution(spec, state.execution)) if state.execution else set()
        for scratch_db in sorted(made | ({state.scratch_database} if state.scratch_database else set())):
            _drop(spec, scratch_db, config.rehearsal)
    outcome = f"rehearsal of {name} could not be completed: {reason}"
    sns.notify(settings.topic_arn, f"dbops rehearsal ERROR: {name}", f"{outcome}\nExecution: {state.execution}")
    return state.model_copy(update={"outcome": outcome[:30000]})
