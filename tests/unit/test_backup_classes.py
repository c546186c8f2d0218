"""Grandfather-father-son classes: the first verified nightly backup of each month is monthly, of each ISO week
weekly; failed and unverified backups are never either."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dbops.backup.catalog import BackupManifest, CatalogEntry, StoredObject, Verification
from dbops.backup.classes import classify
from dbops.config.backup import RetentionClasses


def _entry(day: datetime, verified: bool | None) -> CatalogEntry:
    backup_id = day.strftime("%Y%m%d")
    manifest = BackupManifest(
        id=backup_id,
        database="app",
        kind="nightly",
        dump=StoredObject(key=f"backups/nightly/app/{backup_id}/database.dump.zst", size=1, sha256="0", raw_size=1),
        pg_dump_version="18",
        server_version="18",
        server_version_num=180000,
        started_at=day,
        finished_at=day,
        duration_seconds=1,
        tables=[],
    )
    check = (
        None
        if verified is None
        else Verification(backup_id=backup_id, ok=verified, checked_at=day, seconds=1, detail="")
    )
    return CatalogEntry(manifest=manifest, verification=check)


def test_first_verified_of_the_month_and_of_the_week() -> None:
    # Wed 2026-09-30 .. Wed 2026-10-14: the 30th verified (first of September? no: September's first was earlier,
    # not listed), Oct 1 failed verification, Oct 2 unverified, Oct 3 verified: October's monthly; ISO week 40
    # (Sep 28 - Oct 4) already had Sep 30; week 41 (Oct 5 -) starts with a verified backup on Oct 6
    start = datetime(2026, 9, 30, 2, tzinfo=UTC)
    outcome = {0: True, 1: False, 2: None, 3: True, 4: True, 5: None, 6: True, 7: True, 14: True}
    entries = [_entry(start + timedelta(days=d), v) for d, v in outcome.items()]

    classes = classify(reversed(entries), RetentionClasses(weekly=90, monthly=365))

    assert classes == {
        "20260930": "monthly",  # the first verified listed in September
        "20261001": "nightly",
        "20261002": "nightly",
        "20261003": "monthly",
        "20261004": "nightly",
        "20261005": "nightly",
        "20261006": "weekly",
        "20261007": "nightly",
        "20261014": "weekly",
    }
    only_weekly = classify(entries, RetentionClasses(weekly=90))
    assert {k for k, v in only_weekly.items() if v != "nightly"} == {"20260930", "20261006", "20261014"}
    assert set(classify(entries, RetentionClasses()).values()) == {"nightly"}
