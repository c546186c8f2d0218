"""Grandfather-father-son over a year of nights, half of them failing (the 40-night simulation under a compliance
Object Lock is in tests/integration/test_object_lock.py).

Backups are simulated as their manifests, archives and verification records (the catalog and the tags are what
retention reads; real pg_dumps would only make it slow); the bucket's lifecycle rules are the stack's own, applied
by tests/integration/lifecycle_helpers.py as S3 would.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from dbops import aws
from dbops.backup import catalog
from dbops.backup.catalog import BackupManifest
from dbops.backup.retention import release_for_expiry
from dbops.config.backup import RetentionClasses
from infra.retention_settings import RetentionDays
from local_stack.aws import LocalAws
from tests.integration.lifecycle_helpers import SimulatedLifecycle, configure_like_the_stack, write_catalog_backup

DATABASE = "app"
KEEP = 3
YEAR_START = date(2026, 1, 1)


def _night(bucket: str, day: int, verified: bool) -> BackupManifest:
    """Night `day` (1: 2026-01-01)'s committed backup, finished at 02:00 UTC that night."""
    finished = datetime.combine(YEAR_START + timedelta(days=day - 1), datetime.min.time(), UTC) + timedelta(hours=2)
    return write_catalog_backup(bucket, DATABASE, finished, verified)


def _expected_classes(verified_days: list[int]) -> dict[int, str]:
    """The oracle, written out plainly: the first verified night of each month, then of each ISO week."""
    classes: dict[int, str] = {}
    months: set[tuple[int, int]] = set()
    weeks: set[tuple[int, int]] = set()
    for day in sorted(verified_days):
        when = YEAR_START + timedelta(days=day - 1)
        month, week = (when.year, when.month), when.isocalendar()[:2]
        if month not in months:
            classes[day] = "monthly"
        elif week not in weeks:
            classes[day] = "weekly"
        months.add(month)
        weeks.add(week)
    return classes


def test_a_year_of_nights_half_failing_keeps_the_monthlies_weeklies_and_recent_nights(
    local_aws: LocalAws, bucket: str
) -> None:
    """Nights 4k+2 fail outright (nothing committed), 4k commit but fail verification, odd nights verify. Ages:
    nightly 7, weekly 21, monthly 365 days (short nightly and weekly ages keep the simulation fast; the rules
    are the same as at 30 / 90 / 365). The retention pass runs after each verified backup, as the Backup function
    runs it (a backup failing verification ends its branch before retention)."""
    weekly_days = 21
    retention = RetentionDays(nightly=7, weekly=weekly_days, monthly=365, noncurrent_versions=1)
    classes = RetentionClasses(weekly=retention.weekly, monthly=retention.monthly)
    configure_like_the_stack(bucket, retention)
    lifecycle = SimulatedLifecycle(bucket, noncurrent_days=retention.noncurrent_versions)
    nights: dict[str, int] = {}
    for day in range(1, 366):
        lifecycle.expire(day)
        if day % 4 != 2:
            manifest = _night(bucket, day, verified=day % 2 == 1)
            nights[manifest.id] = day
            if day % 2 == 1:
                release_for_expiry(bucket, "nightly", DATABASE, KEEP, classes=classes)  # the Backup function's pass
        lifecycle.observe(day)

    left = catalog.list_backups(bucket, kind="nightly", database=DATABASE)
    by_class: dict[str, list[int]] = {}
    for entry in left:
        tags = aws.client("s3").get_object_tagging(Bucket=bucket, Key=entry.manifest.dump.key)["TagSet"]
        backup_class = {t["Key"]: t["Value"] for t in tags}["dbops-class"]
        by_class.setdefault(backup_class, []).append(nights[entry.manifest.id])
    expected = _expected_classes([d for d in range(1, 366) if d % 2 == 1])
    # written on night d, a backup of a class kept N days is gone from night d + N + 1: on night 365, the
    # monthlies of all 12 months, the weeklies of the last 21 days, every backup of the last 7 nights
    assert sorted(by_class["monthly"]) == sorted(d for d, c in expected.items() if c == "monthly")
    assert len(by_class["monthly"]) == 12
    # e.g. February: night 32 (the 1st) committed but failed verification, so the 2nd is February's monthly
    assert str(YEAR_START + timedelta(days=sorted(by_class["monthly"])[1] - 1)) == "2026-02-02"
    weeklies = sorted(d for d, c in expected.items() if c == "weekly" and d >= 365 - weekly_days)
    assert sorted(by_class["weekly"]) == weeklies and len(weeklies) >= 2
    recent = [d for d in range(365 - retention.nightly, 366) if d % 4 != 2]  # committed, verified or not
    assert sorted(by_class["nightly"]) == [d for d in recent if d not in expected or expected[d] == "nightly"]
    assert len(left) == 12 + len(by_class["weekly"]) + len(by_class["nightly"])
    # the expired backups' versions went too, as the bucket's noncurrent-version rule removes them
    current = {key for key, _ in lifecycle._objects() if key.startswith("backups/")}  # not the retention ledger
    versions = aws.client("s3").list_object_versions(Bucket=bucket, Prefix="backups/")
    keys = {v["Key"] for v in [*versions.get("Versions", []), *versions.get("DeleteMarkers", [])]}
    assert keys == current | set(lifecycle.hidden)
