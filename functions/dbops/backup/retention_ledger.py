"""The retention ledger: retention/<kind>/<database>.json, what the last retention pass over a kind and database saw
or wrote on each object (its LastModified and its whole tag set) and when a pass last read every object's tags.

A pass (dbops.backup.retention) reads no tags of an object the ledger holds as written at the LastModified it is
listed with and already carrying the tags the pass wants; it reads all of them (a full check) when the ledger is
missing, unreadable, of an unknown shape, or its last full check is FULL_CHECK_AGE old, so that a tag changed by hand
is put right within that. An entry is kept only when the listing began in a later second than the object was
written (S3's LastModified has one-second resolution: an object written again within the same second, after a pass
read its tags, would look unchanged). A ledger that cannot be written (the pass's `ledger_error`) leaves the previous
one: its entries for the objects the pass re-tagged hold the old tags, which the next pass (wanting the new ones)
reads again, and its full check ages, so within FULL_CHECK_AGE every pass reads every object.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dbops.aws import s3stream
from dbops.contract import RETENTION_LEDGER_PREFIX
from dbops.errors import DbopsError

FULL_CHECK_AGE = timedelta(days=7)


class LedgerEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    modified: datetime = Field(description="the object's LastModified when its tags were read or written")
    tags: dict[str, str] = Field(description="its whole tag set then")


class RetentionLedger(BaseModel):
    model_config = ConfigDict(extra="forbid")

    full_check_at: datetime | None = Field(default=None, description="the last pass that read every object's tags")
    objects: dict[str, LedgerEntry] = Field(default_factory=dict)


def ledger_key(kind: str, database: str) -> str:
    return f"{RETENTION_LEDGER_PREFIX}{kind}/{database}.json"


def read_ledger(bucket: str, kind: str, database: str) -> RetentionLedger:
    """The stored ledger; an empty one (every object checked) when it is missing, unreadable or of another shape."""
    try:
        text = s3stream.get_text(bucket, ledger_key(kind, database))
        return RetentionLedger.model_validate_json(text) if text else RetentionLedger()
    except (DbopsError, ValidationError, ValueError):
        return RetentionLedger()


class LedgerPass:
    """One pass's use of the ledger: which objects it may leave unread, and what it saw or wrote on the others."""

    def __init__(
        self, bucket: str, kind: str, database: str, now: datetime, listed: dict[str, datetime], at: datetime | None
    ) -> None:
        self.bucket, self.key = bucket, ledger_key(kind, database)
        self.previous = read_ledger(bucket, kind, database)
        last = self.previous.full_check_at
        self.full = last is None or now - last >= FULL_CHECK_AGE
        self.full_check_at = now if self.full else last
        self.listed = listed
        # trusted: written in a second before the listing began (None: S3 gave no clock, trust nothing)
        self.before = at.replace(microsecond=0) if at else None
        self.seen: dict[str, LedgerEntry] = {}
        self.error: str | None = None

    def known(self, key: str) -> dict[str, str] | None:
        """The tags the ledger holds for `key` as it is listed now; None: read them (a full check, or not known)."""
        entry = self.previous.objects.get(key)
        if self.full or entry is None or entry.modified != self.listed.get(key):
            return None
        return entry.tags

    def unread(self, key: str) -> None:
        """`key` was left unread: its entry carries over."""
        self.seen[key] = self.previous.objects[key]

    def saw(self, key: str, tags: dict[str, str]) -> None:
        """`key`, as listed, carries `tags` (read, or written by this pass)."""
        self.seen[key] = LedgerEntry(modified=self.listed[key], tags=tags)

    def before_changes(self, to_read: set[str]) -> None:
        """Before any tag is written: the stored ledger without the objects this pass reads, so that a pass that stops
        half-way leaves none of them known (the tags it wrote could otherwise be taken, later, for the old ones)."""
        if any(key in self.previous.objects for key in to_read):
            kept = {k: e for k, e in self.previous.objects.items() if k in self.listed and k not in to_read}
            self._write(RetentionLedger(full_check_at=self.previous.full_check_at, objects=kept))

    def finish(self) -> None:
        """The pass ended: what it saw, of the objects still listed and written before the listing's second."""
        before = self.before
        trusted = {
            k: e
            for k, e in sorted(self.seen.items())
            if before is not None and e.modified.replace(microsecond=0) < before
        }
        self._write(RetentionLedger(full_check_at=self.full_check_at, objects=trusted))

    def _write(self, ledger: RetentionLedger) -> None:
        try:
            s3stream.put_json(self.bucket, self.key, ledger.model_dump_json())
        except DbopsError as exc:
            self.error = f"retention ledger not written: {exc}"
