"""Grandfather-father-son classes of nightly backups: which are kept as weekly and monthly backups.

The first verified nightly backup (by when it finished, UTC) of each month is a monthly backup, and of each ISO
week a weekly one (a backup first of both is monthly: it is kept the longer); every other nightly backup is a
nightly one. A class not configured is not given. Recomputed on every retention pass from the catalog: a backup
verified later than a newer one of its week (by a drill, say) takes the week's place, and the other goes back to
nightly (its lock, if it was lengthened, stays: S3 never shortens one).
"""

from __future__ import annotations

from collections.abc import Iterable

from dbops.backup.catalog import CatalogEntry
from dbops.config.backup import RetentionClasses


def classify(entries: Iterable[CatalogEntry], classes: RetentionClasses) -> dict[str, str]:
    """Each backup's id -> its class (nightly, weekly or monthly)."""
    result: dict[str, str] = {}
    weeks: set[tuple[int, int]] = set()
    months: set[tuple[int, int]] = set()
    for entry in sorted(entries, key=lambda e: e.manifest.finished_at):
        finished = entry.manifest.finished_at
        iso = finished.isocalendar()
        week, month = (iso.year, iso.week), (finished.year, finished.month)
        backup_class = "nightly"
        if entry.verified:
            if classes.monthly and month not in months:
                backup_class = "monthly"
            elif classes.weekly and week not in weeks:
                backup_class = "weekly"
            months.add(month)
            weeks.add(week)
        result[entry.manifest.id] = backup_class
    return result
