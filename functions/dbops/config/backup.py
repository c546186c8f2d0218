"""Backup settings that infra and the functions share: retention (and its weekly and monthly classes), the Object
Lock, when a backup moves to Fargate, and the parallel format's streams."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

# a nightly or predeploy backup may expire only once this many newer backups of it verified (dbops.backup.retention)
DEFAULT_KEEP = 3
# a backup that took more than this share of the Lambda timeout runs on Fargate next time: databases grow, and a
# backup that stops at the deadline commits nothing (dbops.backup.placement)
DEFAULT_MAX_SHARE = 0.6
# pg_dump's output beyond which a backup runs on Fargate whatever its last duration said (a fast night is no
# promise): 32 GiB in 60% of 15 minutes is ~60 MB/s, a rate well below what bench/README.md measures locally;
# lower it (DBOPS_BACKUP_FARGATE_RAW_BYTES) when the function streams to S3 slower than that
DEFAULT_MAX_RAW_BYTES = 32 * 1024**3
# a parallel backup's COPY streams at most (also bounded by the machine's CPUs: dbops.backup.parallel.plan)
DEFAULT_MAX_STREAMS = 4
# `backup.format: auto` backs up in the parallel format once the last backup wrote this much before compression
# and there is more than one CPU to copy with (dbops.backup.formats)
AUTO_PARALLEL_RAW_BYTES = 1024**3


class RetentionClasses(BaseModel):
    """Grandfather-father-son over nightly backups: the first verified nightly backup of each ISO week is kept
    `weekly` days and of each month `monthly` days (None: no such class; the others are plain nightly backups)."""

    weekly: int | None = Field(default=None, ge=1)
    monthly: int | None = Field(default=None, ge=1)

    def days(self, backup_class: str) -> int | None:
        return {"weekly": self.weekly, "monthly": self.monthly}.get(backup_class)


class BackupLock(BaseModel):
    """S3 Object Lock on every backup object dbops writes: `mode` for `days` (a nightly backup), or for its kind's
    age where `kind_days` gives one (a predeploy backup is kept 90 days: locked 90 days)."""

    mode: Literal["governance", "compliance"]
    days: int = Field(ge=1)
    kind_days: dict[str, int] = Field(default_factory=dict, description="kind -> its lifecycle age, nightly aside")

    def until(self, kind: str, written: datetime) -> datetime:
        return written + timedelta(days=self.kind_days.get(kind, self.days))
