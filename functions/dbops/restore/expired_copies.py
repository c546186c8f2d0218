"""What restores leave on the server, dropped once no one needs it (after each restore, and daily): the previous
databases kept after full restores, once their time is up; work databases of restores that have ended."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

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

    def expired(rec: records.RestoreRecord, name: str) -> bool:
        return (
            rec.pre_restore_db == name
            and rec.keep_until is not None
            and rec.keep_until < now
            and rec.target_db is not None
            and name == databases.work_name(rec.target_db, rec.restore_id, databases.PRE_RESTORE)
        )

    return _drop_recorded(settings, database, databases.PRE_RESTORE, "restore", expired)


def drop_orphaned_work(settings: FunctionSettings, database: str) -> list[str]:
    """Drop the work databases (`<target>__restore_<id>`, `<target>__drill_<id>`) of restores of `database` that have
    ended (their record is written): a stage that ran on after the safety backup beside it failed and Rollback had
    dropped what there was, a Lambda or task cut off. A restore still running has no record: its work is kept."""
    return [
        name
        for kind in ("restore", "drill")
        for name in _drop_recorded(settings, database, kind, kind, lambda rec, name: rec.work_db == name)
    ]


def _drop_recorded(
    settings: FunctionSettings,
    database: str,
    purpose: str,
    kind: Literal["restore", "drill"],
    due: Callable[[records.RestoreRecord, str], bool],
) -> list[str]:
    """Drop the server's databases named as `databases.work_name` names them for `purpose` whose restore's record
    (of `kind`, of `database`) makes them `due`; a name without a record is left alone. Returns those dropped."""
    spec = database_spec(settings.database(database))
    dropped = []
    for name, restore_id in sorted(databases.named_for(spec, purpose).items()):
        rec = records.load(settings.bucket, kind, database, restore_id)
        if rec is not None and due(rec, name):
            databases.drop(spec, name)
            dropped.append(name)
    return dropped
