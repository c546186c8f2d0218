"""The rules that grade a database, aspect by aspect, from what the bucket, CloudWatch and RDS hold (no reads here)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from dbops.backup.catalog import CatalogEntry
from dbops.config.thresholds import Thresholds
from dbops.contract import RETAINED_KINDS
from dbops.health.model import HealthReport, Status
from dbops.health.thresholds import grade
from dbops.restore.records import RestoreRecord
from dbops.status.model import Aspect
from dbops.text import human_age, human_bytes

HOUR = 3600.0
DRILL_DUE = timedelta(days=8)  # the drill is weekly: a day's grace
HEALTH_STALE = timedelta(minutes=30)  # the health function reports every 5 minutes
VERIFIED_TEXT = {True: "verified", False: "verification FAILED", None: "not verified"}


def _worst(*found: Status) -> Status:
    return max(found, key=lambda s: s.rank)


def _format(entry: CatalogEntry) -> str:
    """How the archive was written: pg_dump's custom format compressed with zstd, unless the manifest says other."""
    recorded = entry.manifest.model_dump().get("format")
    return str(recorded) if recorded else f"custom+{entry.manifest.dump.compression}"


def backup(entries: list[CatalogEntry], now: datetime, t: Thresholds) -> Aspect:
    """The newest committed backup of any kind: its age against the RPO, and whether it verified."""
    if not entries:
        return Aspect(name="backup", status=Status.CRITICAL, text="no backup")
    newest = entries[0]
    age = newest.age_seconds(now)
    status = grade(age / HOUR, t.backup_age_warn_hours, t.backup_age_critical_hours)
    if newest.verified is False:  # counted as a failed backup (BackupFailed)
        status = Status.CRITICAL
    elif newest.verified is None:
        status = _worst(status, Status.WARN)
    m = newest.manifest
    return Aspect(
        name="backup",
        status=status,
        text=f"{human_age(age)} ago, {human_bytes(m.dump.size)}, {_format(newest)}, {VERIFIED_TEXT[newest.verified]}",
        values={
            "id": m.id,
            "kind": m.kind,
            "age_hours": round(age / HOUR, 3),
            "bytes": m.dump.size,
            "format": _format(newest),
            "verified": newest.verified,
        },
    )


def retained(entries: list[CatalogEntry], now: datetime, t: Thresholds) -> Aspect:
    """The newest verified backup retention keeps whatever its age (nightly or predeploy): the line of recovery."""
    kept = next((e for e in entries if e.verified and e.manifest.kind in RETAINED_KINDS), None)
    if kept is None:
        return Aspect(name="retained", status=Status.CRITICAL, text="no verified nightly or predeploy backup")
    age = kept.age_seconds(now)
    return Aspect(
        name="retained",
        status=grade(age / HOUR, t.backup_age_warn_hours, t.backup_age_critical_hours),
        text=f"{kept.manifest.id} ({human_age(age)} ago)",
        values={"id": kept.manifest.id, "age_hours": round(age / HOUR, 3)},
    )


def next_backup(expression: str | None, upcoming: datetime | None, now: datetime) -> Aspect:
    """When the schedule next starts a backup; nothing to grade (the backup column grades what it produced)."""
    if expression is None:
        return Aspect(name="next_backup", status=Status.UNKNOWN, text="schedule not given")
    if upcoming is None:
        return Aspect(name="next_backup", status=Status.OK, text=expression, values={"schedule": expression})
    text = f"in {human_age((upcoming - now).total_seconds())} ({upcoming:%Y-%m-%d %H:%M} UTC)"
    return Aspect(name="next_backup", status=Status.OK, text=text, values={"at": upcoming.isoformat()})


def point_in_time(
    source: tuple[str, str] | None, window: tuple[datetime, datetime] | str | None, now: datetime, t: Thresholds
) -> Aspect:
    """The RDS restorable window and how far its latest moment lags now; `window` a reason when there is none."""
    if source is None:
        return Aspect(name="point_in_time", status=Status.UNKNOWN, text="-")
    if not isinstance(window, tuple):
        return Aspect(name="point_in_time", status=Status.CRITICAL, text=window or f"RDS {source[1]} not found")
    earliest, latest = window
    lag = (now - latest).total_seconds()
    return Aspect(
        name="point_in_time",
        status=grade(lag, t.restorable_lag_warn_seconds, t.restorable_lag_critical_seconds),
        text=f"{earliest:%m-%d %H:%M} to {latest:%m-%d %H:%M} UTC (lag {human_age(max(lag, 0))})",
        values={"earliest": earliest.isoformat(), "latest": latest.isoformat(), "lag_seconds": round(lag, 1)},
    )


def drill(last: RestoreRecord | None, now: datetime) -> Aspect:
    """The last drill: failed is critical (the backups may not restore), older than a week and a day a warning."""
    if last is None:
        return Aspect(name="drill", status=Status.UNKNOWN, text="no drill recorded")
    age = now - last.finished_at
    values: dict[str, Any] = {"id": last.restore_id, "ok": last.ok, "rto_seconds": last.seconds}
    if not last.ok:
        text = f"FAILED {human_age(age.total_seconds())} ago: {' '.join(last.detail.split())[:80]}"
        return Aspect(name="drill", status=Status.CRITICAL, text=text, values=values)
    status = Status.WARN if age > DRILL_DUE else Status.OK
    text = f"ok {human_age(age.total_seconds())} ago, RTO {human_age(last.seconds)}"
    return Aspect(name="drill", status=status, text=text, values=values)


def health(report: HealthReport | None, now: datetime) -> Aspect:
    """The health function's last report: its worst probe; a report older than 30 minutes is a warning."""
    if report is None:
        return Aspect(name="health", status=Status.UNKNOWN, text="unknown")
    age = now - report.checked_at
    worst = next((p for p in report.probes if p.status is report.status), None)
    what = f"{worst.status.value} {worst.name}" if worst and report.status is not Status.OK else report.status.value
    values: dict[str, Any] = {"status": report.status.value, "probe_errors": report.probe_errors}
    if age > HEALTH_STALE:
        return Aspect(
            name="health", status=Status.WARN, text=f"{what}, {human_age(age.total_seconds())} old", values=values
        )
    errors = f", {report.probe_errors} probes failed" if report.probe_errors else ""
    return Aspect(name="health", status=report.status, text=f"{what}{errors}", values=values)


def rehearsal(result: dict[str, Any] | None) -> Aspect:
    """The last deployed rehearsal's verdict: a fail is a warning (the migration is unsafe; nothing is down)."""
    if result is None:
        return Aspect(name="rehearsal", status=Status.UNKNOWN, text="-")
    verdict = str(result.get("verdict"))
    reasons = "; ".join(str(r) for r in result.get("reasons") or [])
    status = Status.OK if verdict == "pass" else Status.WARN
    text = verdict if not reasons else f"{verdict}: {reasons[:80]}"
    return Aspect(name="rehearsal", status=status, text=text, values={"id": result.get("rehearsal_id")})


def alarms(firing: list[dict[str, Any]]) -> Aspect:
    """CloudWatch alarms of this database in state ALARM: each is critical until it clears."""
    if not firing:
        return Aspect(name="alarms", status=Status.OK, text="none")
    names = [str(a["AlarmName"]) for a in firing]
    return Aspect(name="alarms", status=Status.CRITICAL, text=", ".join(names), values={"alarms": ", ".join(names)})
