"""Backup freshness against the RPO, from the catalog in the bucket (no database query).

The newest committed backup counts unless its verification failed: a backup is committed only with its
manifest, and verification runs after it, so requiring `verified` would flap between the two steps. Whether
the counted backup is verified, and the age of the newest verified one, are reported alongside.
"""

from __future__ import annotations

from datetime import datetime

from dbops.backup.catalog import CatalogEntry
from dbops.config.thresholds import Thresholds
from dbops.health.model import Finding, Status
from dbops.health.thresholds import grade
from dbops.text import human_age

HOUR = 3600.0
VERIFIED_TEXT = {True: "verified", False: "verification FAILED", None: "not verified yet"}


def probe_backup_freshness(
    entries: list[CatalogEntry], thresholds: Thresholds, now: datetime, database: str, bucket: str
) -> Finding:
    t = thresholds
    usable = [e for e in entries if e.verified is not False]
    failed = [e for e in entries if e.verified is False]
    verified = [e for e in entries if e.verified]
    details = [
        f"{e.manifest.kind} {e.manifest.id}: finished {human_age(e.age_seconds(now))} ago, {VERIFIED_TEXT[e.verified]}"
        for e in entries[:5]
    ]
    verified_age = verified[0].age_seconds(now) / HOUR if verified else None
    if not usable:
        what = f"every one of the {len(failed)} backups failed verification" if failed else "no committed backup"
        return Finding(
            status=Status.CRITICAL,
            message=f"{what} of {database} in s3://{bucket}: run a backup now",
            values={"backup_age_hours": None, "verified_backup_age_hours": verified_age, "backup_verified": 0},
            details=details,
        )
    newest = usable[0]
    hours = newest.age_seconds(now) / HOUR
    values = {
        "backup_age_hours": round(hours, 3),
        "verified_backup_age_hours": round(verified_age, 3) if verified_age is not None else None,
        "backup_verified": 1 if newest.verified else 0,
    }
    message = (
        f"newest backup {newest.manifest.id} ({newest.manifest.kind}) finished {human_age(hours * HOUR)} ago, "
        f"{VERIFIED_TEXT[newest.verified]} (RPO {t.backup_age_warn_hours:g} h, critical at "
        f"{t.backup_age_critical_hours:g} h)"
    )
    if failed and failed[0].manifest.finished_at > newest.manifest.finished_at:
        message += f"; newer backup {failed[0].manifest.id} failed verification and does not count"
    return Finding(
        status=grade(hours, t.backup_age_warn_hours, t.backup_age_critical_hours),
        message=message,
        values=values,
        details=details,
    )
