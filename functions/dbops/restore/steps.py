"""The restore steps. Each takes the execution state and returns it updated; each is idempotent, so a
retried step does no harm. Nothing touches the target before `swap`, and `rollback` puts it back as it was.
"""

from __future__ import annotations

import difflib
import os
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from dbops.aws import app_hooks, sns
from dbops.backup import catalog
from dbops.backup.catalog import IDENTITY_FORMAT, BackupManifest, TableStat
from dbops.backup.run import BackupRequest, run_backup
from dbops.backup.verify import verify_entry
from dbops.config.durations import format_duration
from dbops.errors import CheckFailed, DbopsError, RestoreRefused
from dbops.postgres.catalog import TABLE_SHAPE, count_rows
from dbops.postgres.connection import ConnectionSpec, connect, database_spec, describe_error, server_version_num
from dbops.postgres.pgrestore import run_pg_restore
from dbops.postgres.tools import find_tool, server_major, tool_version
from dbops.restore import archive, databases, records
from dbops.restore.models import RestoreState, TablePlan
from dbops.restore.names import display, parse_table_name
from dbops.restore.table_swap import SwapLimits, swap_tables
from dbops.settings import FunctionSettings

SHAPE_OF_TABLE = sql.SQL(
    "SELECT {shape} FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p', 'm')"
).format(shape=TABLE_SHAPE)


def _spec(state: RestoreState, settings: FunctionSettings) -> ConnectionSpec:
    return database_spec(settings.database(state.database))


def _target(state: RestoreState, settings: FunctionSettings) -> ConnectionSpec:
    assert state.target_db is not None
    return _spec(state, settings).for_database(state.target_db)


def _work(state: RestoreState, settings: FunctionSettings) -> ConnectionSpec:
    assert state.work_db is not None
    return _spec(state, settings).for_database(state.work_db)


def _manifest(state: RestoreState, settings: FunctionSettings) -> BackupManifest:
    """The chosen backup's manifest, read straight from its prefix."""
    assert state.backup_id is not None and state.backup_kind is not None and state.database is not None
    return catalog.load_backup(settings.bucket, state.backup_kind, state.database, state.backup_id).manifest


def _plan(table: TableStat) -> TablePlan:
    return TablePlan(
        schema_name=table.schema_name, name=table.name, rows=table.rows, oid=table.oid, relkind=table.relkind
    )


def _find_table(text: str, tables: list[TableStat], where: str) -> TableStat:
    """The table of `where` (a backup, a database) an operator's name means: the exact spelling first, then with
    unquoted parts folded to lower case; a name without a schema means public's table, or the only one of that
    name."""
    try:
        wanted = parse_table_name(text)
    except ValueError as exc:
        raise RestoreRefused(str(exc)) from None
    by_name = {(t.schema_name, t.name): t for t in tables}
    for schema, name in wanted.spellings():
        if schema is not None:
            if (schema, name) in by_name:
                return by_name[(schema, name)]
            continue
        if ("public", name) in by_name:
            return by_name[("public", name)]
        found = [t for t in tables if t.name == name]
        if len(found) == 1:
            return found[0]
        if found:
            raise RestoreRefused(
                f"{text!r} is ambiguous in {where}: name the schema, one of "
                + ", ".join(display(t.schema_name, t.name) for t in found)
            )
    names = [display(t.schema_name, t.name) for t in tables]
    close = difflib.get_close_matches(text, names, n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f" ({len(names)} tables in it)"
    raise RestoreRefused(f"{text!r} is not a table in {where}{hint}")


def _resolve_tables(names: list[str], manifest: BackupManifest) -> list[TablePlan]:
    """The chosen tables, each followed by its partitions or inheritance children: a table as the application
    sees it (`SELECT * FROM parent` reads them all). A single partition or child restores by its own name."""
    if manifest.format_version < IDENTITY_FORMAT:
        raise RestoreRefused(
            f"backup {manifest.id} was taken by an older dbops that did not record which objects belong to each "
            "table, so its tables cannot be restored one by one: restore it whole into a new database "
            "(--target NAME) and copy the tables from there, or take a new backup"
        )
    return [_plan(t) for t in resolve_names(names, manifest.tables, f"backup {manifest.id}")]


def resolve_names(names: list[str], tables: list[TableStat], where: str) -> list[TableStat]:
    """The tables named (each followed by its partitions or inheritance children) among `tables` of `where`;
    RestoreRefused names what is wrong with a name."""
    children: dict[int, list[TableStat]] = {}
    for t in tables:
        for parent in t.parents:
            children.setdefault(parent, []).append(t)
    chosen: dict[int | None, TableStat] = {}
    for text in names:
        table = _find_table(text, tables, where)
        if table.relkind == "m":
            raise RestoreRefused(
                f"{display(table.schema_name, table.name)} is a materialized view: it is not restored by name but "
                "refreshed after the tables it reads are restored; name those tables"
            )
        todo = [table]
        while todo:
            t = todo.pop(0)
            if t.oid not in chosen:
                chosen[t.oid] = t
                todo.extend(children.get(t.oid or 0, []))
    return list(chosen.values())


def _tables_in(spec: ConnectionSpec, plans: list[TablePlan]) -> list[str]:
    """The planned tables that are missing in a database, or there of another kind, each with why."""
    kinds = {"r": "table", "p": "partitioned table"}
    with connect(spec) as conn:
        problems = []
        for t in plans:
            row = conn.execute(
                "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = %s",
                [t.schema_name, t.name],
            ).fetchone()
            if row is None:
                problems.append(f"{t.qualified} (missing)")
            elif row[0] != t.relkind:
                there = kinds.get(row[0], f"not a table (relkind {row[0]})")
                problems.append(f"{t.qualified} (a {kinds[t.relkind]} in the backup, a {there} there)")
    return problems


def choose_backup(bucket: str, ref: str, kind: str | None, database: str) -> catalog.CatalogEntry:
    """`latest` without a kind means the newest backup the operator took, not a safety copy of a restore."""
    if ref == "latest" and kind is None:
        for entry in catalog.list_backups(bucket, database=database):
            if entry.manifest.kind != "prerestore":
                return entry
    return catalog.find_backup(bucket, ref, kind=kind, database=database)


def check_versions(manifest: BackupManifest, spec: ConnectionSpec, pg_bin_dir: str | None) -> None:
    """pg_restore must read the archive, and the server must not be older than the one backed up."""
    pg_restore = tool_version(find_tool("pg_restore", pg_bin_dir))
    if pg_restore.major < int(manifest.pg_dump_version.split(".")[0]):
        raise RestoreRefused(
            f"pg_restore {pg_restore.number} cannot read an archive made by pg_dump {manifest.pg_dump_version}"
        )
    with connect(databases.admin_spec(spec)) as conn:
        server = server_version_num(conn)
    if server_major(server) < server_major(manifest.server_version_num):
        raise RestoreRefused(
            f"the server is PostgreSQL {server_major(server)}, older than the backup's "
            f"{server_major(manifest.server_version_num)}: restoring to an older major version is not supported"
        )


def validate(state: RestoreState, settings: FunctionSettings, backup_id: str | None = None) -> RestoreState:
    """Check everything before anything is touched: backup, verification, tables, target, versions. `backup_id`:
    that backup instead of the request's (a point-in-time restore's dump of its moment)."""
    req = state.request
    db = settings.database(req.database)
    spec = database_spec(db)
    if backup_id is not None:
        entry = catalog.find_backup(settings.bucket, backup_id, database=db.name)
    else:
        entry = choose_backup(settings.bucket, req.backup, req.kind, db.name)
    manifest = entry.manifest
    if entry.verified is False:
        raise RestoreRefused(
            f"backup {manifest.id} failed verification: {entry.verification and entry.verification.detail}"
        )
    if entry.verified is None:
        verify_entry(settings.bucket, entry, settings.pg_bin_dir)
    plans = _resolve_tables(req.tables, manifest) if req.tables else [_plan(t) for t in manifest.tables]
    check_versions(manifest, spec, settings.pg_bin_dir)
    target = spec.dbname if req.mode == "drill" else (req.target or spec.dbname)
    target_existed = databases.exists(spec, target)
    if req.tables and req.mode == "restore":
        if not target_existed:
            raise RestoreRefused(f"target database {target} does not exist: a selective restore needs it")
        missing = _tables_in(spec.for_database(target), plans)
        if missing:
            raise RestoreRefused(f"not restorable into target {target}: {', '.join(missing)}")
    purpose = "drill" if req.mode == "drill" else "restore"
    return state.model_copy(
        update={
            "started_at": state.started_at or datetime.now(UTC),
            "database": db.name,
            "backup_id": manifest.id,
            "backup_kind": manifest.kind,
            "backup_finished_at": manifest.finished_at,
            "archive_size": manifest.dump.raw_size,
            "target_db": None if req.mode == "drill" else target,
            "target_existed": target_existed and req.mode == "restore",
            "work_db": databases.work_name(target, state.restore_id, purpose),
            "pre_restore_db": databases.work_name(target, state.restore_id, "pre_restore")
            if req.mode == "restore" and not req.tables and target_existed
            else None,
            "tables": plans,
            "use_fargate": manifest.dump.raw_size > settings.fargate_threshold_bytes,
        }
    )


def safety_backup(state: RestoreState, settings: FunctionSettings) -> RestoreState:
    """A fresh backup of the target as it is now (kind prerestore), unless the target is new."""
    if state.drill or not state.target_existed or state.safety_backup_id:
        return state
    for entry in catalog.list_backups(settings.bucket, kind="prerestore", database=state.database):
        if entry.manifest.labels.get("restore_id") == state.restore_id:  # a retried step: reuse it
            return state.model_copy(update={"safety_backup_id": entry.manifest.id})
    manifest = run_backup(
        _target(state, settings),
        BackupRequest(
            database=str(state.database),
            bucket=settings.bucket,
            kind="prerestore",
            pg_bin_dir=settings.pg_bin_dir,
            labels={"restore_id": state.restore_id},
        ),
    )
    return state.model_copy(update={"safety_backup_id": manifest.id})


def stop_application(state: RestoreState, settings: FunctionSettings) -> RestoreState:
    hook = settings.database(state.database).app_hook
    if hook is None or state.drill:
        return state
    app_hooks.signal_application(hook, "stop", str(state.database), state.restore_id)
    return state.model_copy(update={"app_stopped": True})


SHM = Path("/dev/shm")


def work_dir(configured: str | None, archive_bytes: int) -> str | None:
    """Where the archive is unpacked for pg_restore -j: the configured folder; else memory (/dev/shm) when it
    holds twice the archive, since a file written once and read once right away gains nothing from disk and
    its writeback slows the restore; else the temporary folder."""
    if configured:
        return configured
    try:
        stats = os.statvfs(SHM)
    except OSError:
        return None
    return str(SHM) if stats.f_bavail * stats.f_frsize > 2 * archive_bytes else None


def stage(state: RestoreState, settings: FunctionSettings) -> RestoreState:
    """Restore into the work database (`<db>__restore_<id>`), from a local copy so pg_restore -j can run."""
    spec = _spec(state, settings)
    assert state.work_db is not None
    databases.drop(spec, state.work_db)  # a retried stage starts clean
    databases.create(spec, state.work_db)
    folder = Path(tempfile.mkdtemp(prefix="dbops-restore-", dir=work_dir(settings.work_dir, state.archive_size)))
    try:
        manifest = _manifest(state, settings)
        local = archive.download(settings.bucket, manifest.dump, folder / "archive.dump")
        args = [f"--jobs={settings.restore_jobs}"]
        if state.selective:
            chosen = {t.oid for t in state.tables if t.oid is not None}
            listing = archive.selective_list(local, manifest.tables, chosen, folder, settings.pg_bin_dir)
            args.append(f"--use-list={listing}")
        run_pg_restore(_work(state, settings), args, archive=local, pg_bin_dir=settings.pg_bin_dir)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return state


def _count(conn: psycopg.Connection[Any], plan: TablePlan, format_version: int) -> int:
    """A table's rows as its manifest counted them (a partitioned table has none of its own)."""
    if format_version < IDENTITY_FORMAT:  # older manifests counted an inheritance parent with its children
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(plan.schema_name, plan.name))
    elif plan.relkind == "p":
        return 0
    else:
        query = count_rows(plan.schema_name, plan.name, plan.relkind)
    row = conn.execute(query).fetchone()
    return int(row[0]) if row else -1


def check(state: RestoreState, settings: FunctionSettings) -> RestoreState:
    """Every restored table's row count, indexes and constraints match the manifest."""
    backup = _manifest(state, settings)
    manifest = {(t.schema_name, t.name): t for t in backup.tables}
    problems, checked = [], []
    with connect(_work(state, settings), statement_timeout_ms=0) as conn:
        conn.execute("SET row_security = off")  # every row counts, as in the backup's count
        for plan in state.tables:
            expected = manifest[(plan.schema_name, plan.name)]
            row = conn.execute(SHAPE_OF_TABLE, [plan.schema_name, plan.name]).fetchone()
            if row is None:
                problems.append(f"{plan.qualified} is missing")
                continue
            rows = _count(conn, plan, backup.format_version)
            if rows != expected.rows:
                problems.append(f"{plan.qualified} has {rows} rows, the backup {expected.rows}")
            if (int(row[0]), int(row[1])) != (expected.indexes, expected.constraints):
                problems.append(
                    f"{plan.qualified} has {row[0]} indexes and {row[1]} constraints, "
                    f"the backup {expected.indexes} and {expected.constraints}"
                )
            checked.append(plan.qualified)
        conn.execute("SET default_transaction_read_only = on")  # custom checks may read, never write
        for query in settings.database(state.database).restore_checks:
            try:  # operator configuration, like the SQL of a migration: trusted, but run read-only
                row = conn.execute(sql.SQL(query)).fetchone()
            except psycopg.Error as exc:
                problems.append(f"custom check {query!r} failed: {describe_error(exc)}")
                continue
            if not row or row[0] is not True:
                problems.append(f"custom check {query!r} returned {row[0] if row else 'no row'}")
            else:
                checked.append(f"check: {query}")
    if problems:
        raise CheckFailed(
            f"staged copy {state.work_db} does not match backup {state.backup_id}: " + "; ".join(problems)
        )
    return state.model_copy(update={"checked": checked})


def swap(state: RestoreState, settings: FunctionSettings) -> RestoreState:
    """Put the checked copy in place. Full: two renames; selective: one transaction on the target."""
    spec = _spec(state, settings)
    assert state.target_db is not None and state.work_db is not None
    if state.selective:
        if state.swapped:
            return state
        limits = SwapLimits(
            settings.restore_lock_timeout_s, settings.restore_lock_wait_budget_s, settings.restore_max_pause_s
        )
        result = swap_tables(_work(state, settings), _target(state, settings), state.tables, limits)
        return state.model_copy(
            update={
                "swapped": True,
                "refreshed_views": result.refreshed_views,
                "swap_pause_s": result.pause_s,
                "swap_lock_attempts": result.lock_attempts,
            }
        )
    target, work, pre = state.target_db, state.work_db, state.pre_restore_db
    if pre is None:  # a new target: nothing to keep aside
        if databases.exists(spec, work):
            databases.rename(spec, work, target)
        return state.model_copy(update={"swapped": True})
    present = databases.existing(spec, target, work, pre)
    if {pre, target} <= present and work not in present:
        return state.model_copy(update={"swapped": True})  # done by an earlier attempt
    if target in present:
        databases.allow_connections(spec, target, False)
        databases.end_connections(spec, target)
        databases.rename(spec, target, pre)
    try:
        databases.rename(spec, work, target)
    except DbopsError:
        databases.rename(spec, pre, target)
        databases.allow_connections(spec, target, True)
        raise
    databases.allow_connections(spec, pre, True)  # the kept copy is open for inspection, under its own name
    return state.model_copy(update={"swapped": True})


def start_application(state: RestoreState, settings: FunctionSettings) -> RestoreState:
    hook = settings.database(state.database).app_hook
    if hook is not None and state.app_stopped:
        app_hooks.signal_application(hook, "start", str(state.database), state.restore_id)
    return state.model_copy(update={"app_stopped": False})


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
            kind="drill" if state.drill else "restore",
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
        ),
    )


def drop_expired_copies(settings: FunctionSettings, database: str) -> list[str]:
    """Drop the previous databases kept after restores of `database` whose time is up; returns their names.

    Runs after every successful restore and on its own daily schedule. Only a name a restore of ours would have
    given the copy (`<target>__pre_restore_<restore id>`, from the same record) is ever dropped."""
    now = datetime.now(UTC)
    expired = [
        rec.pre_restore_db
        for rec in records.load_all(settings.bucket, "restore", database)
        if rec.pre_restore_db
        and rec.keep_until
        and rec.keep_until < now
        and rec.target_db
        and rec.pre_restore_db == databases.work_name(rec.target_db, rec.restore_id, "pre_restore")
    ]
    if not expired:
        return []
    spec = database_spec(settings.database(database))
    dropped = sorted(databases.existing(spec, *expired))
    for name in dropped:
        databases.drop(spec, name)
    return dropped


def describe(state: RestoreState) -> str:
    what = (
        f"{len(state.tables)} tables ({', '.join(t.qualified for t in state.tables)})"
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
        spec = _spec(state, settings)
        if (state.selective or state.drill) and state.work_db:
            databases.drop(spec, state.work_db)
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
        drop_expired_copies(settings, str(state.database))
    sns.notify(
        settings.topic_arn,
        f"dbops {req.mode} {'succeeded' if not req.dry_run else 'dry run'}: {state.database}",
        outcome,
    )
    return state.model_copy(update={"outcome": outcome})


def rollback(state: RestoreState, settings: FunctionSettings) -> RestoreState:
    """Any failure: the target exactly as it was, the scratch copy gone, the application started again."""
    if state.database is None or state.work_db is None:  # failed in validate: nothing was touched
        return state
    spec = _spec(state, settings)
    target, work, pre = state.target_db, state.work_db, state.pre_restore_db
    if target and pre:
        present = databases.existing(spec, target, work, pre)
        if pre in present:
            if target in present and work not in present:
                databases.rename(spec, target, work)  # the swap went through before the failure was seen
                present = (present - {target}) | {work}
            if target not in present:
                databases.rename(spec, pre, target)
    if target and state.target_existed and databases.exists(spec, target):
        databases.allow_connections(spec, target, True)
    databases.drop(spec, work)
    return start_application(state, settings)


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
