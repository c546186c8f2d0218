"""The whole rehearsal: a scratch copy, the command watched, its rollback checked, the copy dropped, a verdict.

    result = run_rehearsal(spec, RehearsalRequest(database="sprint_reports_v2", command=["alembic", "upgrade",
                           "head"]), bucket="my-backups")
    print(format_report(result)); sys.exit(0 if result.passed else 1)

`spec` is the production database: with a backup as the source it is never connected to (only its server's
`postgres` database, where the scratch database is created and dropped); with `source="database"` it is read
once by pg_dump. Everything else happens in the scratch database:

1. sweep: drop the scratch databases of rehearsals that died (`scratch.drop_stale`);
2. restore the backup (or the fresh dump) into `<db>__rehearse_<id>`, then VACUUM (ANALYZE): statistics and
   visibility as production has them, and autovacuum has nothing to start mid-rehearsal;
3. read the revision, dump the schema, note every relation's storage and size;
4. run the command with the scratch URL, the watcher sampling its sessions; stop it at --max-duration;
5. note the storage again (rewrites), run the downgrade, dump the schema again and compare;
6. drop the scratch database, whatever happened, and judge.

Refusals (no backup, no such program, no way to roll back) come before anything is created.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import psycopg
from psycopg import sql

from dbops.backup.catalog import CatalogEntry
from dbops.errors import DatabaseError, RehearsalRefused
from dbops.postgres.connection import ConnectionSpec, connect, describe_error, server_version_num
from dbops.postgres.tools import server_major
from dbops.rehearsal import rewrites, schema, scratch, source
from dbops.rehearsal.command import command_env, default_downgrade, find_program, run_command, secrets_of
from dbops.rehearsal.judge import Scene, WatchedRun, judge
from dbops.rehearsal.models import (
    CommandRun,
    RehearsalRequest,
    RehearsalResult,
    SchemaCheck,
    Timings,
)
from dbops.rehearsal.rewrites import Relations
from dbops.rehearsal.watcher import Observations, Watcher
from dbops.restore import databases

Progress = Callable[[str], None]
SESSIONS_END_WAIT_S = 5.0


def _ignore(_: str) -> None:
    pass


def read_revision(spec: ConnectionSpec, table: str | None) -> str | None:
    """The revision(s) in the migration tool's version table (Alembic: alembic_version.version_num; `schema.table`
    for one in a schema of its own, each part as spelled), space-separated; None without such a table (`base`)."""
    if not table:
        return None
    name = sql.Identifier(*table.split(".", 1))
    with connect(spec) as conn:
        row = conn.execute(sql.SQL("SELECT to_regclass({})::text").format(sql.Literal(name.as_string(conn)))).fetchone()
        if row is None or row[0] is None:
            return None
        try:
            rows = conn.execute(sql.SQL("SELECT version_num::text FROM {} ORDER BY 1").format(name)).fetchall()
        except psycopg.errors.UndefinedColumn:
            return None  # another tool's bookkeeping: no revision to read
    return " ".join(str(r[0]) for r in rows) or None


ACTIVE_SESSIONS = """
    SELECT pid FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'
    AND pid <> pg_backend_pid() AND pid <> ALL(%s::int[])
"""
END_SESSIONS = """
    SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'
    AND pid <> pg_backend_pid() AND pid <> ALL(%s::int[])
"""


def end_command_sessions(target: ConnectionSpec, keep: list[int], wait_s: float = SESSIONS_END_WAIT_S) -> None:
    """Wait up to `wait_s` for the command's sessions to go (its processes were stopped), then end those that stay:
    a session still running a statement (a stopped command's server side runs on) or left idle in a transaction
    would hold its locks through the downgrade."""
    with connect(databases.admin_spec(target)) as conn:
        deadline = time.monotonic() + wait_s
        while conn.execute(ACTIVE_SESSIONS, [target.dbname, keep]).fetchall():
            if time.monotonic() >= deadline:
                conn.execute(END_SESSIONS, [target.dbname, keep])
                deadline = time.monotonic() + SESSIONS_END_WAIT_S
            time.sleep(0.02)


def _refuse_early(spec: ConnectionSpec, request: RehearsalRequest) -> None:
    """What can be refused before anything is created."""
    env = command_env(spec, request.url_env, request.pass_env)
    for argv in (request.command, request.downgrade):
        if argv and find_program(argv, env) is None:
            raise RehearsalRefused(f"{argv[0]}: no such program on the command's PATH")
    if not request.skip_downgrade and request.downgrade is None and default_downgrade(request.command, "x") is None:
        raise RehearsalRefused(
            f"cannot tell how to roll back `{' '.join(request.command)}` (not an `alembic ... upgrade`): give "
            "--downgrade COMMAND, or --no-downgrade to rehearse the upgrade alone"
        )


@dataclass
class _Context:
    """What every phase needs: the request, where things run, and the timings being filled in."""

    request: RehearsalRequest
    pg_bin_dir: str | None
    timings: Timings
    say: Progress
    output: Progress | None
    copy_progress: source.CopyProgress | None = None
    revisions: dict[str, str | None] = field(default_factory=dict)


@dataclass
class _Upgrade:
    run: CommandRun
    observations: Observations
    before: Relations
    after: Relations
    schema_before: str


@dataclass
class _Rollback:
    argv: list[str] | None
    watched: WatchedRun | None = None
    schema_check: SchemaCheck = field(default_factory=lambda: SchemaCheck(compared=False))


def _fill(
    ctx: _Context,
    box: scratch.Scratch,
    spec: ConnectionSpec,
    entry: CatalogEntry | None,
    bucket: str | None,
    jobs: int,
    folder: str | None,
) -> int:
    """The scratch database from the backup (or a fresh dump), vacuumed and analyzed; returns the server's major."""
    t = time.monotonic()
    if entry is not None and bucket is not None:
        ctx.say(f"restoring backup {entry.manifest.id} ({entry.manifest.kind}) into {box.name}")
        source.restore_backup(
            bucket, entry, box.spec, pg_bin_dir=ctx.pg_bin_dir, jobs=jobs, folder=folder, progress=ctx.copy_progress
        )
    else:
        ctx.say(f"copying {spec.dbname} with pg_dump into {box.name}")
        source.copy_database(
            spec, box.spec, pg_bin_dir=ctx.pg_bin_dir, jobs=jobs, folder=folder, progress=ctx.copy_progress
        )
    ctx.timings.restore_s = round(time.monotonic() - t, 3)
    t = time.monotonic()
    with connect(box.spec, statement_timeout_ms=0) as conn:
        conn.execute("VACUUM (ANALYZE)")
        major = server_major(server_version_num(conn))
    ctx.timings.vacuum_analyze_s = round(time.monotonic() - t, 3)
    return major


def _rollback_command(request: RehearsalRequest, revision: str | None) -> list[str] | None:
    if request.skip_downgrade:
        return None
    if request.downgrade is not None:
        return request.downgrade
    if revision and " " in revision:
        raise RehearsalRefused(f"the database is at several revisions ({revision}): give --downgrade COMMAND")
    return default_downgrade(request.command, revision)


def _upgrade(ctx: _Context, box: scratch.Scratch, env: dict[str, str], secrets: list[str]) -> _Upgrade:
    """The command, watched; the relations and revision before and after it."""
    request = ctx.request
    t = time.monotonic()
    schema_before = schema.dump_schema(box.spec, ctx.pg_bin_dir, request.version_table)
    ctx.timings.schema_s = round(time.monotonic() - t, 3)
    before = rewrites.snapshot(box.spec)
    ctx.say(f"running `{' '.join(request.command)}` with {request.url_env} set to {box.name}")
    with Watcher(box.spec, request.interval_s, exclude=[box.keeper_pid]) as watcher:
        run = run_command(request.command, env, request.max_duration_s, secrets, ctx.output)
        wait = 0.0 if run.timed_out else SESSIONS_END_WAIT_S
        end_command_sessions(box.spec, [box.keeper_pid, *watcher.pids], wait)
    observations = watcher.stop()
    ctx.timings.upgrade_s = run.seconds
    ctx.revisions["upgrade"] = read_revision(box.spec, request.version_table)
    return _Upgrade(run, observations, before, rewrites.snapshot(box.spec), schema_before)


def _rollback(
    ctx: _Context, box: scratch.Scratch, upgrade: _Upgrade, env: dict[str, str], secrets: list[str]
) -> _Rollback:
    """The downgrade after a successful upgrade, watched like it, and the schema it leaves compared with the one
    before."""
    rollback = _Rollback(_rollback_command(ctx.request, ctx.revisions.get("before")))
    if rollback.argv is None or not upgrade.run.ok:
        return rollback
    ctx.say(f"running the downgrade `{' '.join(rollback.argv)}`")
    with Watcher(box.spec, ctx.request.interval_s, exclude=[box.keeper_pid]) as watcher:
        run = run_command(rollback.argv, env, ctx.request.max_duration_s, secrets, ctx.output)
        wait = 0.0 if run.timed_out else SESSIONS_END_WAIT_S
        end_command_sessions(box.spec, [box.keeper_pid, *watcher.pids], wait)
    rollback.watched = WatchedRun(run, watcher.stop(), upgrade.after, rewrites.snapshot(box.spec))
    ctx.timings.downgrade_s = run.seconds
    ctx.revisions["downgrade"] = read_revision(box.spec, ctx.request.version_table)
    if run.ok:
        t = time.monotonic()
        schema_after = schema.dump_schema(box.spec, ctx.pg_bin_dir, ctx.request.version_table)
        ctx.timings.schema_s = round(ctx.timings.schema_s + time.monotonic() - t, 3)
        rollback.schema_check = schema.compare(upgrade.schema_before, schema_after)
    return rollback


def run_rehearsal(
    spec: ConnectionSpec,
    request: RehearsalRequest,
    *,
    bucket: str | None = None,
    pg_bin_dir: str | None = None,
    restore_jobs: int = 2,
    work_dir: str | None = None,
    progress: Progress | None = None,
    output: Progress | None = None,
    copy_progress: source.CopyProgress | None = None,
) -> RehearsalResult:
    """Rehearse `request.command` on a scratch copy of `spec`'s database (see the module's docstring): `progress`
    gets a line per phase, `output` each line the command prints (password hidden), `copy_progress` the bytes of the
    scratch copy as it is made. Raises RehearsalRefused before
    anything is created when it cannot start as asked; any other failure is raised after the scratch database is
    dropped (a PostgreSQL error as a DatabaseError naming it)."""
    try:
        return _rehearse(spec, request, bucket, pg_bin_dir, restore_jobs, work_dir, progress, output, copy_progress)
    except psycopg.Error as exc:
        raise DatabaseError(f"rehearsal of {request.database} failed: {describe_error(exc)}") from None


def _rehearse(
    spec: ConnectionSpec,
    request: RehearsalRequest,
    bucket: str | None,
    pg_bin_dir: str | None,
    restore_jobs: int,
    work_dir: str | None,
    progress: Progress | None,
    output: Progress | None,
    copy_progress: source.CopyProgress | None = None,
) -> RehearsalResult:
    t_start = time.monotonic()
    ctx = _Context(request, pg_bin_dir, Timings(), progress or _ignore, output, copy_progress)
    _refuse_early(spec, request)
    entry = None
    if request.source == "backup":
        if not bucket:
            raise RehearsalRefused("give the backup bucket (--bucket or DBOPS_BUCKET), or rehearse on --from-database")
        entry = source.choose_backup(bucket, request.backup, request.kind, request.database)
        source.check_versions(entry, spec, pg_bin_dir)

    t = time.monotonic()
    stale = scratch.drop_stale(spec, timedelta(seconds=request.stale_after_s))
    source.sweep_work_folders(work_dir)
    ctx.timings.sweep_s = round(time.monotonic() - t, 3)
    for name in stale:
        ctx.say(f"dropped {name}: the scratch database of a rehearsal that died")

    marker = {"backup_id": entry.manifest.id if entry else None, "source": request.source}
    with scratch.scratch_database(spec, request.database, **marker) as box:
        major = _fill(ctx, box, spec, entry, bucket, restore_jobs, work_dir)
        ctx.revisions["before"] = read_revision(box.spec, request.version_table)
        _rollback_command(request, ctx.revisions["before"])  # refuse before the upgrade if it cannot be rolled back
        env = command_env(box.spec, request.url_env, request.pass_env)
        secrets = secrets_of(box.spec)
        upgrade = _upgrade(ctx, box, env, secrets)
        rollback = _rollback(ctx, box, upgrade, env, secrets)
        t_drop = time.monotonic()
    ctx.timings.drop_s = round(time.monotonic() - t_drop, 3)
    ctx.timings.total_s = round(time.monotonic() - t_start, 3)
    return _result(ctx, spec, box, entry, upgrade, rollback, stale, major)


def _result(
    ctx: _Context,
    spec: ConnectionSpec,
    box: scratch.Scratch,
    entry: CatalogEntry | None,
    upgrade: _Upgrade,
    rollback: _Rollback,
    stale: list[str],
    major: int,
) -> RehearsalResult:
    scene = Scene(
        rehearsal_id=box.rehearsal_id,
        server=f"{spec.host}:{spec.port}",
        scratch_database=box.name,
        scratch_dropped=not databases.exists(spec, box.name),
        entry=entry,
        server_major=major,
    )
    return judge(
        ctx.request,
        scene,
        WatchedRun(upgrade.run, upgrade.observations, upgrade.before, upgrade.after),
        rollback.watched,
        downgrade_command=rollback.argv,
        schema_check=rollback.schema_check,
        revisions=ctx.revisions,
        timings=ctx.timings,
        stale=stale,
    )
