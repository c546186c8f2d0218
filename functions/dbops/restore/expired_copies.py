"""What restores leave on the server, dropped once no one needs it (after each restore, and daily): the previous
databases kept after full restores, once their time is up; work databases of restores that have ended."""

from __future__ import annotations

from datetime import UTC, datetime

from dbops.postgres.connection import database_spec
from dbops.restore import databases, records
from dbops.settings import FunctionSettings


def drop(settings: FunctionSettings, database: str) -> list[str]:
    """Drop the previous databases kept after restores of `database` whose time is up; returns their names.

    Runs after every successful restore and on its own daily schedule. The server's databases named as a restore
    names the copy it keeps are looked up, and only their restores' records read (not every restore's ever): a
    name is dropped only when the record of the restore it names (`<target>__pre_restore_<restore id>`) says its
    time is up and gives the copy that very name."""
    now = datetime.now(UTC)
    spec = database_spec(settings.database(database))
    expired = []
    for name, restore_id in sorted(databases.named_for(spec, databases.PRE_RESTORE).items()):
        rec = records.load(settings.bucket, "restore", database, restore_id)
        if (
            rec is not None
            and rec.keep_until is not None
            and rec.keep_until < now
            and rec.target_db
            and rec.pre_restore_db == name == databases.work_name(rec.target_db, rec.restore_id, databases.PRE_RESTORE)
        ):
            expired.append(name)
    for name in expired:
        databases.drop(spec, name)
    return expired


def drop_orphaned_work(settings: FunctionSettings, database: str) -> list[str]:
    """Drop the work databases (`<target>__restore_<id>`, `<target>__drill_<id>`) of restores of `database` that have
    ended (their record is written): a stage that ran on after the safety backup beside it failed and Rollback had
    dropped what there was, a Lambda or task cut off. A restore still running has no record: its work is kept."""
    spec = database_spec(settings.database(database))
    orphans = []
    for kind in ("restore", "drill"):
        for name, restore_id in sorted(databases.named_for(spec, kind).items()):
            rec = records.load(settings.bucket, kind, database, restore_id)
            if rec is not None and rec.work_db == name:  # that restore's own work database, and it has ended
                orphans.append(name)
    for name in orphans:
        databases.drop(spec, name)
    return orphans
