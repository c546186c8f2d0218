"""The backup catalog, kept in the bucket itself.

Layout: backups/<kind>/<database>/<id>/{database.dump.zst, schema.sql.zst, manifest.json, verification.json};
a parallel backup holds schema.dump.zst (pg_dump's archive without the copied tables' rows) and data-<oid>.<n>.zst.
Each kind has its own prefix so lifecycle rules can expire them at different ages. The manifest is written
last and is the commit marker: objects without one are never listed, restored or counted as a backup. A
manifest whose archive is gone (lifecycle expires a backup's objects one by one, in no set order) is not a
backup either: only a manifest with every object it names is listed.
"""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from dbops.aws import s3stream
from dbops.contract import BACKUP_KINDS as BACKUP_KINDS
from dbops.contract import VERIFICATION_RECORD
from dbops.contract import BackupKind as BackupKind
from dbops.errors import BackupNotFound

ROOT = "backups/"
MANIFEST = "manifest.json"
VERIFICATION = VERIFICATION_RECORD
READERS = 8  # catalog objects read at once


# manifests from format 2 on record each table's identity (catalog OIDs): selective restores need it
IDENTITY_FORMAT = 2
RelKind = Literal["r", "p", "m"]


class TableStat(BaseModel):
    schema_name: str
    name: str
    rows: int = Field(description="exact row count in the dump's snapshot (format 2: the table's own, FROM ONLY)")
    bytes: int = Field(description="pg_total_relation_size at dump time")
    indexes: int = Field(default=0, description="indexes on the table at dump time")
    constraints: int = Field(default=0, description="constraints other than foreign keys at dump time")
    oid: int | None = Field(default=None, description="pg_class OID in the dumped database (format 2)")
    relkind: RelKind = Field(default="r", description="r table, p partitioned table, m materialized view")
    parents: list[int] = Field(default_factory=list, description="OIDs of the tables it inherits from or partitions")
    objects: list[tuple[int, int]] = Field(
        default_factory=list,
        description="catalog OIDs of what belongs to it (indexes, constraints, triggers, rules, policies, defaults, "
        "owned sequences, statistics objects) as (catalog, OID): how a selective restore picks the archive's entries",
    )

    @property
    def qualified(self) -> str:
        return f"{self.schema_name}.{self.name}"


class StoredObject(BaseModel):
    key: str
    size: int
    sha256: str
    raw_size: int = Field(description="bytes before compression")
    compression: Literal["zstd"] = "zstd"


class DataObject(StoredObject):
    """One range of one table's rows in a parallel backup: COPY text format, zstd-compressed."""

    table_oid: int
    schema_name: str
    table: str
    columns: list[str] = Field(description="the columns copied, in order (generated columns are left out)")
    first_page: int | None = Field(default=None, description="heap pages from (None: from the first)")
    end_page: int | None = Field(default=None, description="heap pages before (None: to the last)")
    rows: int

    @property
    def range_text(self) -> str:
        if self.first_page is None and self.end_page is None:
            return "all pages"
        return f"pages [{self.first_page or 0}, {'end' if self.end_page is None else self.end_page})"


class BackupManifest(BaseModel):
    format_version: int = 1  # written as IDENTITY_FORMAT by run_backup; old manifests read as 1
    id: str
    database: str
    kind: BackupKind
    format: Literal["single", "parallel"] = Field(
        default="single", description="single: one pg_dump archive; parallel: `dump` holds all but `data`'s rows"
    )
    dump: StoredObject
    data: list[DataObject] = Field(default_factory=list, description="parallel: the copied tables' rows")
    workers: int | None = Field(default=None, description="parallel: the COPY streams used")
    encoding: str | None = Field(default=None, description="parallel: the server encoding the rows are in")
    tables_only: bool = Field(
        default=False,
        description="parallel: the rows of `tables` only (a selective restore's safety backup); other tables' "
        "definitions are in `dump`, their rows nowhere: it restores selectively, never whole",
    )
    schema_sql: StoredObject | None = None
    pg_dump_version: str
    server_version: str
    server_version_num: int
    started_at: datetime
    finished_at: datetime
    duration_seconds: float
    tables: list[TableStat]
    labels: dict[str, str] = Field(default_factory=dict, description="e.g. the restore a safety backup belongs to")

    @property
    def prefix(self) -> str:
        return backup_prefix(self.kind, self.database, self.id)

    @property
    def archive_bytes(self) -> int:
        """The archive's size in the bucket: pg_dump's, and in the parallel format its data objects'."""
        return self.dump.size + sum(obj.size for obj in self.data)

    @property
    def raw_bytes(self) -> int:
        """What pg_dump (and, in the parallel format, COPY) wrote before compression."""
        return sum(obj.raw_size for obj in stored_objects(self))


class Verification(BaseModel):
    backup_id: str
    ok: bool
    checked_at: datetime
    seconds: float
    detail: str


class CatalogEntry(BaseModel):
    manifest: BackupManifest
    verification: Verification | None = None

    @property
    def verified(self) -> bool | None:
        return None if self.verification is None else self.verification.ok

    def age_seconds(self, now: datetime | None = None) -> float:
        return ((now or datetime.now(UTC)) - self.manifest.finished_at).total_seconds()


def new_backup_id(now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def backup_prefix(kind: str, database: str, backup_id: str) -> str:
    return f"{ROOT}{kind}/{database}/{backup_id}/"


def write_manifest(bucket: str, manifest: BackupManifest, lock: s3stream.ObjectLock | None = None) -> None:
    s3stream.put_json(bucket, manifest.prefix + MANIFEST, manifest.model_dump_json(indent=2), lock)


def record_verification(bucket: str, manifest: BackupManifest, result: Verification) -> None:
    """Written unlocked, whatever the backup's lock: each verification writes it again (a locked record would keep
    every version), and losing it only keeps more backups (an unverified backup counts for nothing)."""
    s3stream.put_json(bucket, manifest.prefix + VERIFICATION, result.model_dump_json(indent=2))


def _backup_prefixes(bucket: str, kind: str | None, database: str | None) -> dict[str, frozenset[str]]:
    """Each prefix holding a manifest, with the keys under it, from one listing per kind (a listing of every key
    under the prefixes that can hold the backups asked for)."""
    kinds = [kind] if kind else list(BACKUP_KINDS)
    prefixes = [f"{ROOT}{k}/{database}/" for k in kinds] if database else [f"{ROOT}{kind}/" if kind else ROOT]
    under: dict[str, set[str]] = {}
    for key in (k for prefix in prefixes for k in s3stream.list_keys(bucket, prefix)):
        under.setdefault(key.rsplit("/", 1)[0] + "/", set()).add(key)
    return {p: frozenset(keys) for p, keys in under.items() if p + MANIFEST in keys}


def stored_objects(manifest: BackupManifest) -> list[StoredObject]:
    """The archives a backup's manifest names: a restore needs every one of them."""
    return [manifest.dump, *([manifest.schema_sql] if manifest.schema_sql else []), *manifest.data]


def _load(bucket: str, prefix: str, present: frozenset[str]) -> CatalogEntry | None:
    """The backup under `prefix`, or None when it is not one: no manifest, or an object it names is not among
    `present`, the keys a listing found under the prefix (gone: lifecycle expires a backup's objects one by one)."""
    if prefix + MANIFEST not in present:
        return None
    text = s3stream.get_text(bucket, prefix + MANIFEST)
    if text is None:
        return None
    manifest = BackupManifest.model_validate_json(text)
    if not all(obj.key in present for obj in stored_objects(manifest)):
        return None
    verification_text = s3stream.get_text(bucket, prefix + VERIFICATION) if prefix + VERIFICATION in present else None
    verification = Verification.model_validate_json(verification_text) if verification_text else None
    return CatalogEntry(manifest=manifest, verification=verification)


def list_backups(bucket: str, *, kind: str | None = None, database: str | None = None) -> list[CatalogEntry]:
    """Committed backups, newest first. The objects are read a few at a time: a month of nightly backups is
    60 small GETs, which one after another would take a second of every health run."""
    prefixes = _backup_prefixes(bucket, kind, database)
    with ThreadPoolExecutor(max_workers=READERS) as pool:
        loaded = pool.map(lambda item: _load(bucket, *item), prefixes.items())
        entries = [e for e in loaded if e is not None]
    return sorted(entries, key=lambda e: e.manifest.finished_at, reverse=True)


def backups_since(bucket: str, kind: str, database: str, since: datetime) -> list[CatalogEntry]:
    """The committed backups of `kind` of `database` begun at `since` or later, from their ids (which start with
    the second they began): one listing of the ids, then only those backups read, however many older ones."""
    floor = since.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    prefixes = [p for p in s3stream.list_folders(bucket, f"{ROOT}{kind}/{database}/") if p.split("/")[-2] >= floor]
    with ThreadPoolExecutor(max_workers=READERS) as pool:
        return [e for e in pool.map(lambda prefix: _load_listed(bucket, prefix), prefixes) if e is not None]


def databases(bucket: str) -> list[str]:
    """The databases the bucket holds backups of (a manifest under backups/<kind>/<database>/<id>/), from the listing
    alone: no manifest is read."""
    prefixes = _backup_prefixes(bucket, None, None)  # backups/<kind>/<database>/<id>/
    return sorted({p.removeprefix(ROOT).split("/", 1)[1].rsplit("/", 2)[0] for p in prefixes})


def _load_listed(bucket: str, prefix: str) -> CatalogEntry | None:
    """The backup under `prefix`, its objects' presence from one listing of that prefix alone: a request or two
    whatever the backup's size (a parallel backup of a large database has hundreds of objects)."""
    return _load(bucket, prefix, frozenset(s3stream.list_keys(bucket, prefix)))


def read_manifest(bucket: str, kind: str, database: str, backup_id: str) -> BackupManifest:
    """A backup's manifest alone, one GET: for a step after the backup was found whole (its objects are read
    later, and one gone by then fails that read, named)."""
    text = s3stream.get_text(bucket, backup_prefix(kind, database, backup_id) + MANIFEST)
    if text is None:
        raise _not_in(bucket, kind, database, backup_id)
    return BackupManifest.model_validate_json(text)


def load_backup(bucket: str, kind: str, database: str, backup_id: str) -> CatalogEntry:
    """One backup read straight from its prefix, when its kind and database are known."""
    entry = _load_listed(bucket, backup_prefix(kind, database, backup_id))
    if entry is None:
        raise _not_in(bucket, kind, database, backup_id)
    return entry


def _not_in(bucket: str, kind: str, database: str, backup_id: str) -> BackupNotFound:
    return BackupNotFound(f"backup {backup_id} ({kind} of {database}) not found in bucket {bucket}")


def find_backup(bucket: str, ref: str, *, kind: str | None = None, database: str | None = None) -> CatalogEntry:
    """A backup by id, or the newest one for `latest`."""
    if ref == "latest":
        entries = list_backups(bucket, kind=kind, database=database)
        if not entries:
            scope = " ".join(x for x in (kind, database and f"of {database}") if x) or "any"
            raise BackupNotFound(f"no committed backup ({scope}) in bucket {bucket}")
        return entries[0]
    if "/" in ref:
        raise _not_found(bucket, ref)
    if database is not None:  # the prefixes it can be under, each listed alone (not every backup of the database)
        kinds = [kind] if kind else list(BACKUP_KINDS)
        with ThreadPoolExecutor(max_workers=len(kinds)) as pool:
            found = pool.map(lambda k: _load_listed(bucket, backup_prefix(k, database, ref)), kinds)
            entry = next((e for e in found if e is not None), None)
        if entry is not None:
            return entry
        raise _not_found(bucket, ref)
    for prefix, present in _backup_prefixes(bucket, kind, database).items():
        if prefix.split("/")[-2] == ref:
            entry = _load(bucket, prefix, present)
            if entry is not None:
                return entry
    raise _not_found(bucket, ref)


def _not_found(bucket: str, ref: str) -> BackupNotFound:
    return BackupNotFound(
        f"backup {ref!r} not found in bucket {bucket}; `dbops backups list` shows the committed backups"
    )
