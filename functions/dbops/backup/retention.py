"""Retention: which backups the bucket's lifecycle may expire.

The lifecycle rules of `nightly` and `predeploy` expire an object only when it is older than the kind's age
*and* tagged `dbops-expirable=true`. This module sets that tag: a backup becomes expirable once `keep` newer
backups of the same kind and database have passed verification. The newest `keep` verified backups are never
expirable, whatever their age, so a month of failing backups cannot empty the bucket. Every object of a backup
carries the same tag (the lifecycle expires a backup whole), checked object by object on every pass: a pass
that stopped half-way, or an object written again since (a verification record), is put right by the next.
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

from dbops.aws import s3stream
from dbops.backup import catalog
from dbops.backup.classes import classify
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
    written: dict[str, dict[str, datetime]] = {}  # prefix -> key -> LastModified
    for key, modified in s3stream.list_objects(bucket, f"{catalog.ROOT}{kind}/{database}/"):
        written.setdefault(key.rsplit("/", 1)[0] + "/", {})[key] = modified
    by_class = classify(entries, classes) if kind == CLASSED_KIND and classes is not None else {}
    result.classes = by_class
    plan: list[_Tagging] = []  # each backup's tags
    verified_newer = 0
    for entry in entries:
        backup_class = by_class.get(entry.manifest.id)
        tags = {EXPIRABLE_TAG: "true" if verified_newer >= keep else "false"}
        plan.append(_Tagging(entry.manifest.prefix, tags | ({CLASS_TAG: backup_class} if backup_class else {})))
        plan[-1].lock_days = classes.days(backup_class) if classes and backup_class else None
        plan[-1].keeps_class = kind == CLASSED_KIND and classes is None
        verified_newer += bool(entry.verified)
    backups = {item.prefix for item in plan}
    leftover_tags = {EXPIRABLE_TAG: "true"} | ({CLASS_TAG: "nightly"} if kind == CLASSED_KIND else {})
    with ThreadPoolExecutor(max_workers=catalog.READERS) as pool:
        list(pool.map(lambda item: item.apply(bucket, written), plan))
        leftovers = pool.map(
            lambda objects: _release_leftovers(bucket, objects, now, leftover_tags),
            [objects for prefix, objects in written.items() if prefix not in backups],
        )
        result.leftovers = sorted(key for keys in leftovers for key in keys)
    for entry, item in zip(entries, plan, strict=True):
        (result.expirable if item.tags[EXPIRABLE_TAG] == "true" else result.protected).append(entry.manifest.id)
        if item.retagged:
            result.retagged.append(entry.manifest.id)
        result.locks_extended.extend(item.extended)
    return result


class _Tagging:
    """The tags every object of one backup must carry, and (a weekly or monthly one) how long it must stay locked
    from when each object was written."""

    def __init__(self, prefix: str, tags: dict[str, str]) -> None:
        self.prefix = prefix
        self.tags = tags
        self.lock_days: int | None = None
        self.keeps_class = False  # the classes not known: each object keeps its class tag (none yet: nightly)
        self.retagged = False
        self.extended: list[str] = []

    def apply(self, bucket: str, written: dict[str, dict[str, datetime]]) -> None:
        for key, modified in sorted(written.get(self.prefix, {}).items()):
            current = s3stream.get_tags(bucket, key)
            if current is None:
                continue
            tags = {CLASS_TAG: current.get(CLASS_TAG, "nightly"), **self.tags} if self.keeps_class else self.tags
            if all(current.get(k) == v for k, v in tags.items()):
                continue
            # the lock first: a pass stopped in between leaves the old class, so the next pass does both again
            if self.lock_days and s3stream.extend_lock(bucket, key, modified + timedelta(days=self.lock_days)):
                self.extended.append(key)
            self.retagged |= s3stream.put_tags(bucket, key, {**current, **tags})


def _set_tags(bucket: str, key: str, tags: dict[str, str]) -> bool:
    """Our tags on one object, keeping any other tags (a tag set is replaced whole); False when unchanged or gone."""
    current = s3stream.get_tags(bucket, key)
    if current is None or all(current.get(k) == v for k, v in tags.items()):
        return False
    return s3stream.put_tags(bucket, key, {**current, **tags})


def _release_leftovers(bucket: str, objects: dict[str, datetime], now: datetime, tags: dict[str, str]) -> list[str]:
    """Objects outside any backup, once old enough that no backup still being written can own them."""
    return [
        key
        for key, modified in sorted(objects.items())
        if now - modified >= LEFTOVER_AGE and _set_tags(bucket, key, tags)
    ]


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
