"""Restore and drill results kept in the bucket beside the backups: restores/<db>/<id>.json, drills/<db>/<id>.json."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from dbops.aws import s3stream


class RestoreRecord(BaseModel):
    restore_id: str
    kind: Literal["restore", "drill"]
    database: str
    backup_id: str | None
    target_db: str | None
    tables: list[str]
    ok: bool
    started_at: datetime
    finished_at: datetime
    seconds: float
    detail: str
    pre_restore_db: str | None = None
    keep_until: datetime | None = None
    swap_pause_s: float | None = None  # selective: the application's writes on the restored tables waited this long
    work_db: str | None = None  # the database it staged into (dropped by then, unless something ran on)


def _key(record: RestoreRecord) -> str:
    folder = "drills" if record.kind == "drill" else "restores"
    return f"{folder}/{record.database}/{record.restore_id}.json"


def save(bucket: str, record: RestoreRecord) -> None:
    s3stream.put_json(bucket, _key(record), record.model_dump_json(indent=2))


def _prefix(kind: Literal["restore", "drill"], database: str | None) -> str:
    folder = "drills" if kind == "drill" else "restores"
    return f"{folder}/{database}/" if database else f"{folder}/"


def load_newest(bucket: str, kind: Literal["restore", "drill"], database: str) -> RestoreRecord | None:
    """A database's newest record, read alone: each is written once, when its restore ended, so S3's LastModified
    orders them (a weekly drill's records are never all read to find the last)."""
    newest = max(s3stream.list_objects(bucket, _prefix(kind, database)), key=lambda found: found[1], default=None)
    text = s3stream.get_text(bucket, newest[0]) if newest else None
    return RestoreRecord.model_validate_json(text) if text else None


def load(bucket: str, kind: Literal["restore", "drill"], database: str, restore_id: str) -> RestoreRecord | None:
    """One restore's record, None when there is none."""
    text = s3stream.get_text(bucket, f"{_prefix(kind, database)}{restore_id}.json")
    return RestoreRecord.model_validate_json(text) if text else None


def load_all(bucket: str, kind: Literal["restore", "drill"], database: str | None = None) -> list[RestoreRecord]:
    prefix = _prefix(kind, database)
    records = []
    for key in s3stream.list_keys(bucket, prefix):
        text = s3stream.get_text(bucket, key)
        if text:
            records.append(RestoreRecord.model_validate_json(text))
    return sorted(records, key=lambda r: r.finished_at, reverse=True)
