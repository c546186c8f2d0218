"""Retention: which backups the bucket's lifecycle may expire.

The lifecycle rules of `nightly` and `predeploy` expire an object only when it is older than the kind's age
*and* tagged `dbops-expirable=true`. This module sets that tag: a backup becomes expirable once `keep` newer
backups of the same kind and database have passed verification. The newest `keep` verified backups are never
expirable, whatever their age, so a month of failing backups cannot empty the bucket. Every object of a backup
carries the same tag (the lifecycle expires a backup whole), checked object by object on every pass: a pass
that stopped half-way, or an object written again since (a verification record), is put right by the next.
The lifecycle removes a backup's objects one by one, in no set order: the catalog never lists a backup one
of whose archives is gone.

`prerestore` and `manual` backups keep their age-only rules: they are copies of one moment, not the database's
line of recovery, and are not tagged.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, Field

from dbops.aws import s3stream
from dbops.backup import catalog
from dbops.config.backup import DEFAULT_KEEP
from dbops.contract import EXPIRABLE_TAG, RETAINED_KINDS
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

    def log_fields(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "database": self.database,
            "keep": self.keep,
            "protected": len(self.protected),
            "expirable": len(self.expirable),
            "retagged": self.retagged,
            "leftovers": len(self.leftovers),
        }


def release_for_expiry(
    bucket: str, kind: str, database: str, keep: int = DEFAULT_KEEP, *, now: datetime | None = None
) -> RetentionResult:
    """Tag the backups of `kind` of `database`: expirable once `keep` newer ones verified, else not.

    Idempotent, and safe at any moment: it only ever tags, never deletes. Run it after a backup verified
    (that is when another backup may become expirable). A kind outside RETAINED_KINDS is left as it is."""
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
    plan: list[tuple[catalog.BackupManifest, bool]] = []  # each backup, and whether it may expire
    verified_newer = 0
    for entry in entries:
        plan.append((entry.manifest, verified_newer >= keep))
        verified_newer += bool(entry.verified)
    backups = {manifest.prefix for manifest, _ in plan}
    with ThreadPoolExecutor(max_workers=catalog.READERS) as pool:
        changed = list(pool.map(lambda item: _tag_backup(bucket, item[0].prefix, written, item[1]), plan))
        leftovers = pool.map(
            lambda objects: _release_leftovers(bucket, objects, now),
            [objects for prefix, objects in written.items() if prefix not in backups],
        )
        result.leftovers = sorted(key for keys in leftovers for key in keys)
    for (manifest, expirable), retagged in zip(plan, changed, strict=True):
        (result.expirable if expirable else result.protected).append(manifest.id)
        if retagged:
            result.retagged.append(manifest.id)
    return result


def _tag_backup(bucket: str, prefix: str, written: dict[str, dict[str, datetime]], expirable: bool) -> bool:
    """Give every object of the backup our tag; returns whether any object changed."""
    value = "true" if expirable else "false"
    changed = False
    for key in sorted(written.get(prefix, {})):
        changed |= _set_tag(bucket, key, value)
    return changed


def _set_tag(bucket: str, key: str, value: str) -> bool:
    """Our tag on one object, keeping any other tags (a tag set is replaced whole); False when unchanged or gone."""
    tags = s3stream.get_tags(bucket, key)
    if tags is None or tags.get(EXPIRABLE_TAG) == value:
        return False
    return s3stream.put_tags(bucket, key, {**tags, EXPIRABLE_TAG: value})


def _release_leftovers(bucket: str, objects: dict[str, datetime], now: datetime) -> list[str]:
    """Objects outside any backup, once old enough that no backup still being written can own them."""
    return [
        key
        for key, modified in sorted(objects.items())
        if now - modified >= LEFTOVER_AGE and _set_tag(bucket, key, "true")
    ]
