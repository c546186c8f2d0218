"""Retention: which backups the bucket's lifecycle may expire.

The lifecycle rules of `nightly` and `predeploy` expire an object only when it is older than the kind's age
*and* tagged `dbops-expirable=true`. This module sets that tag: a backup becomes expirable once `keep` newer
backups of the same kind and database have passed verification. The newest `keep` verified backups are never
expirable, whatever their age, so a month of failing backups cannot empty the bucket. Every object of a backup
carries the same tag (the lifecycle expires a backup whole), checked object by object: a pass that stopped
half-way, or an object written again since (a verification record), is put right by the next.

A pass reads only the tags that may have changed: the retention ledger (dbops.backup.retention_ledger) holds, per
object, the LastModified and tags the last pass saw or wrote; an object listed with the same LastModified whose
recorded tags are already what this pass wants is not read. Every object is read when the ledger is missing or bad,
and once every FULL_CHECK_AGE (a tag changed by hand outside dbops is put right within it). The ledger is written at
the end of a pass, and before the pass's first tag write without the objects it is about to read, so a pass stopped
half-way leaves none of those known. The one race it admits: two passes over the same kind and database at once,
with different catalog views, each write the tags and the ledger of their view, and the last tag write and the last
ledger write may come from different passes, leaving the ledger disagreeing with an object's real tags until the
next full check. The safe way round: views only become more expirable as verified backups are added (a pass that
started later sees at least the verified backups the earlier one saw), so the real tag the ledger misstates is the
older view's, the less expirable one, and the next pass, wanting at least the newer view, reads it if the ledger
says otherwise or else leaves a backup kept longer than needed: never released early. Only a catalog that loses a
verified backup (deleted or re-verified as failed) between such racing passes could leave a backup released that
should be kept, until the full check.
The lifecycle removes a backup's objects one by one, in no set order: the catalog never lists a backup one
of whose archives is gone.

Grandfather-father-son: every object of a nightly backup also carries `dbops-class` (nightly, weekly or monthly,
dbops.backup.classes), and with classes configured the nightly lifecycle rules are one per class, each expiring
released objects at its class's age. A backup that becomes a weekly or monthly one has its Object Lock (where it
has one) extended to its class's age before its tag changes: S3 lets a retention grow, never shrink.

`prerestore` and `manual` backups keep their age-only rules: they are copies of one moment, not the database's
line of recovery, and are not tagged.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from dbops.aws import s3listing, s3stream
from dbops.backup import catalog
from dbops.backup.classes import classify
from dbops.backup.retention_ledger import LedgerPass
from dbops.config.backup import DEFAULT_KEEP, RetentionClasses
from dbops.contract import CLASS_TAG, CLASSED_KIND, EXPIRABLE_TAG, RETAINED_KINDS
from dbops.errors import ConfigError

# objects under a database's prefix that belong to no committed backup (a failed backup's leftovers, the rest
# of a backup whose manifest expired) are released once this old: by then no backup still running wrote them
LEFTOVER_AGE = timedelta(days=1)


class RetentionResult(BaseModel):
    """One pass over a database's backups of one kind (backup ids newest first)."""

    kind: str
    database: str
    keep: int
    protected: list[str] = Field(default_factory=list, description="fewer than keep newer verified: kept")
    expirable: list[str] = Field(default_factory=list, description="backups the lifecycle expires once old enough")
    retagged: list[str] = Field(default_factory=list, description="backups whose objects this pass tagged")
    leftovers: list[str] = Field(default_factory=list, description="keys outside any backup, released this pass")
    classes: dict[str, str] = Field(default_factory=dict, description="nightly backups: id -> class")
    locks_extended: list[str] = Field(default_factory=list, description="keys whose Object Lock this pass lengthened")
    full_check: bool = Field(default=False, description="every object's tags read (the ledger old, missing or bad)")
    tags_read: int = Field(default=0, description="objects whose tags this pass read (the others: known unchanged)")
    ledger_error: str | None = None

    def log_fields(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "database": self.database,
            "keep": self.keep,
            "protected": len(self.protected),
            "expirable": len(self.expirable),
            "retagged": self.retagged,
            "leftovers": len(self.leftovers),
            "weekly": sum(c == "weekly" for c in self.classes.values()),
            "monthly": sum(c == "monthly" for c in self.classes.values()),
            "locks_extended": len(self.locks_extended),
            "full_check": self.full_check,
            "tags_read": self.tags_read,
            **({"ledger_error": self.ledger_error} if self.ledger_error else {}),
        }


def release_for_expiry(
    bucket: str,
    kind: str,
    database: str,
    keep: int = DEFAULT_KEEP,
    *,
    now: datetime | None = None,
    classes: RetentionClasses | None = None,
) -> RetentionResult:
    """Tag the backups of `kind` of `database`: expirable once `keep` newer ones verified, else not; nightly
    backups also by class (`classes`: the weekly and monthly ages, empty: every one is nightly; None, the classes
    not known here (`dbops verify --keep-verified`): each backup keeps the class a pass with them gave it, and
    one not given any yet is nightly until such a pass, which the Backup function runs every night).

    Idempotent, and safe at any moment: it only ever tags (and lengthens locks), never deletes. Run it after a
    backup verified (that is when another backup may become expirable). A kind outside RETAINED_KINDS is left
    as it is."""
    if keep < 1:
        raise ConfigError(f"retention must keep at least 1 verified backup, not {keep}")
    result = RetentionResult(kind=kind, database=database, keep=keep)
    if kind not in RETAINED_KINDS:
        return result
    now = now or datetime.now(UTC)
    entries = catalog.list_backups(bucket, kind=kind, database=database)  # newest first
    # listed after the catalog: every object of a backup it holds is written before its manifest, so is here
    listed, listed_at = s3listing.list_objects_dated(bucket, f"{catalog.ROOT}{kind}/{database}/")
    written: dict[str, dict[str, datetime]] = {}  # prefix -> key -> LastModified
    for key, modified in listed.items():
        written.setdefault(key.rsplit("/", 1)[0] + "/", {})[key] = modified
    ledger = LedgerPass(bucket, kind, database, now, listed, listed_at)
    by_class = classify(entries, classes) if kind == CLASSED_KIND and classes is not None else {}
    result.classes = by_class
    plan: list[_Tagging] = []  # each backup's tags
    verified_newer = 0
    for entry in entries:
        backup_class = by_class.get(entry.manifest.id)
        tags = {EXPIRABLE_TAG: "true" if verified_newer >= keep else "false"}
        item = _Tagging(
            written.get(entry.manifest.prefix, {}), tags | ({CLASS_TAG: backup_class} if backup_class else {})
        )
        item.lock_days = classes.days(backup_class) if classes and backup_class else None
        item.keeps_class = kind == CLASSED_KIND and classes is None
        plan.append(item)
        verified_newer += bool(entry.verified)
    backups = {entry.manifest.prefix for entry in entries}
    leftover_tags = {EXPIRABLE_TAG: "true"} | ({CLASS_TAG: "nightly"} if kind == CLASSED_KIND else {})
    # objects outside any backup, once old enough that no backup still being written can own them
    leftovers = [
        _Tagging({k: m for k, m in objects.items() if now - m >= LEFTOVER_AGE}, leftover_tags)
        for prefix, objects in written.items()
        if prefix not in backups
    ]
    to_read = {key for item in [*plan, *leftovers] for key in item.to_read(ledger)}
    ledger.before_changes(to_read)
    with ThreadPoolExecutor(max_workers=catalog.READERS) as pool:
        list(pool.map(lambda item: item.apply(bucket, ledger), [*plan, *leftovers]))
    ledger.finish()
    result.leftovers = sorted(key for item in leftovers for key in item.tagged)
    for entry, item in zip(entries, plan, strict=True):
        (result.expirable if item.tags[EXPIRABLE_TAG] == "true" else result.protected).append(entry.manifest.id)
        if item.tagged:
            result.retagged.append(entry.manifest.id)
        result.locks_extended.extend(item.extended)
    result.full_check = ledger.full
    result.tags_read = sum(item.reads for item in [*plan, *leftovers])
    result.ledger_error = ledger.error
    return result


class _Tagging:
    """The tags every object of one backup (or every leftover of one prefix) must carry, and (a weekly or monthly
    backup) how long it must stay locked from when each object was written."""

    def __init__(self, objects: dict[str, datetime], tags: dict[str, str]) -> None:
        self.objects = objects  # key -> LastModified
        self.tags = tags
        self.lock_days: int | None = None
        self.keeps_class = False  # the classes not known: each object keeps its class tag (none yet: nightly)
        self.reads = 0
        self.tagged: list[str] = []
        self.extended: list[str] = []
        self._to_read: list[str] = []

    def wanted(self, current: dict[str, str]) -> dict[str, str]:
        """The tags an object carrying `current` must carry."""
        return {CLASS_TAG: current.get(CLASS_TAG, "nightly"), **self.tags} if self.keeps_class else self.tags

    def to_read(self, ledger: LedgerPass) -> list[str]:
        """The objects whose tags must be read: all but those the ledger knows unchanged and already right."""
        self._to_read = []
        for key in sorted(self.objects):
            known = ledger.known(key)
            if known is not None and _carries(known, self.wanted(known)):
                ledger.unread(key)
            else:
                self._to_read.append(key)
        return self._to_read

    def apply(self, bucket: str, ledger: LedgerPass) -> None:
        for key in self._to_read:
            current = s3stream.get_tags(bucket, key)
            self.reads += 1
            if current is None:
                continue
            tags = self.wanted(current)
            if _carries(current, tags):
                ledger.saw(key, current)
                continue
            # the lock first: a pass stopped in between leaves the old class, so the next pass does both again
            if self.lock_days and s3stream.extend_lock(bucket, key, self.objects[key] + timedelta(days=self.lock_days)):
                self.extended.append(key)
            if s3stream.put_tags(bucket, key, {**current, **tags}):
                self.tagged.append(key)
                ledger.saw(key, {**current, **tags})


def _carries(current: dict[str, str], tags: dict[str, str]) -> bool:
    return all(current.get(k) == v for k, v in tags.items())


class BackupExpiry(BaseModel):
    """When a listed backup goes: its class, and the bucket's lifecycle age for it or the retention that keeps it."""

    backup_class: str = Field(description="nightly, weekly or monthly for nightly backups; else the kind")
    expires_at: datetime | None = Field(default=None, description="from the bucket's lifecycle rule for it")
    kept: bool = Field(default=False, description="among the newest verified: no age expires it yet")
    lock_mode: str | None = None
    locked_until: datetime | None = None


def _rule_days(rules: list[dict[str, Any]], key: str, tags: dict[str, str]) -> int | None:
    """The days of the lifecycle rule that would expire `key` carrying `tags` (released), if any."""
    for rule in rules:
        conditions = rule.get("Filter", {}).get("And", rule.get("Filter", {}))
        wanted = [*conditions.get("Tags", []), *([conditions["Tag"]] if "Tag" in conditions else [])]
        days = rule.get("Expiration", {}).get("Days")
        if (
            rule.get("Status") == "Enabled"
            and days
            and key.startswith(conditions.get("Prefix", ""))
            and all(tags.get(t["Key"]) == t["Value"] for t in wanted)
        ):
            return int(days)
    return None


def expiries(bucket: str, entries: list[catalog.CatalogEntry]) -> dict[str, BackupExpiry]:
    """Each backup's class, when the lifecycle expires it (S3 counts from the object's creation, to the next
    midnight UTC) or that retention keeps it, and its Object Lock: read from its archive's tags and retention."""
    rules = s3stream.lifecycle_rules(bucket) or []

    def one(entry: catalog.CatalogEntry) -> BackupExpiry:
        m = entry.manifest
        tags = s3stream.get_tags(bucket, m.dump.key) or {}
        backup_class = tags.get(CLASS_TAG, "nightly") if m.kind == CLASSED_KIND else m.kind
        result = BackupExpiry(backup_class=backup_class)
        if m.kind in RETAINED_KINDS and tags.get(EXPIRABLE_TAG) != "true":
            result.kept = True
        else:
            days = _rule_days(rules, m.dump.key, {**tags, EXPIRABLE_TAG: "true"})
            if days is not None:
                midnight = datetime.combine(m.finished_at.date(), datetime.min.time(), UTC)
                result.expires_at = midnight + timedelta(days=days + 1)
        lock = s3stream.get_lock(bucket, m.dump.key)
        if lock is not None:
            result.lock_mode, result.locked_until = lock.mode, lock.until
        return result

    with ThreadPoolExecutor(max_workers=catalog.READERS) as pool:
        return dict(zip([e.manifest.id for e in entries], pool.map(one, entries), strict=True))
