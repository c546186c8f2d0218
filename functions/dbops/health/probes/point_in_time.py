"""Point-in-time readiness on RDS: the instance keeps automated backups (retention over 0 days), and its
LatestRestorableTime is recent. That lag is the real RPO once restores as of a moment exist (dbops.restore.
point_in_time); RDS uploads the WAL every 5 minutes, so a few minutes is normal. Self-managed servers: the
wal_archiving probe."""

from __future__ import annotations

from datetime import UTC, datetime

from dbops.aws.rds import Kind, describe, restore_window
from dbops.config.thresholds import Thresholds
from dbops.errors import ConfigError
from dbops.health.model import Finding, Status
from dbops.health.thresholds import grade
from dbops.text import human_age

POINT_IN_TIME = "point_in_time"


def probe_point_in_time(kind: Kind, identifier: str, thresholds: Thresholds, now: datetime) -> Finding:
    instance = describe(kind, identifier)
    if instance is None:
        return Finding(
            status=Status.CRITICAL,
            message=f"RDS {kind} {identifier} does not exist: no point-in-time restore (check rds_{kind}_id)",
        )
    retention = int(instance.get("BackupRetentionPeriod") or 0)
    try:
        window = restore_window(instance)
    except ConfigError as exc:
        return Finding(status=Status.CRITICAL, message=str(exc), values={"backup_retention_days": retention})
    lag = max(0.0, (now.astimezone(UTC) - window.latest).total_seconds())
    status = grade(lag, thresholds.restorable_lag_warn_seconds, thresholds.restorable_lag_critical_seconds)
    return Finding(
        status=status,
        message=f"RDS {kind} {identifier} restorable to any second from {window.describe()}: the latest is "
        f"{human_age(lag)} old (warn at {human_age(thresholds.restorable_lag_warn_seconds)}), {retention} days kept",
        values={"restorable_lag_seconds": round(lag, 1), "backup_retention_days": retention},
    )
