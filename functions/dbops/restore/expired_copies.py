"""The previous databases kept after restores, dropped once their time is up (after each restore, and daily)."""

from __future__ import annotations

from datetime import UTC, datetime

from dbops.postgres.connection import database_spec
from dbops.restore import databases, records
from dbops.settings import FunctionSettings


def drop(settings: FunctionSettings, database: str) -> list[str]:
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
