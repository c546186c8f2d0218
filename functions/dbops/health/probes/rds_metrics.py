"""The RDS instance's (or Aurora cluster's) own CloudWatch signals: free storage, CPU and connections.

A database on RDS runs out of storage without PostgreSQL noticing until writes fail; CloudWatch's FreeStorageSpace
says so first. Read from namespace AWS/RDS for the instance (`DBInstanceIdentifier`) or the cluster
(`DBClusterIdentifier`), the newest 5-minute datapoint of the last 15 minutes (RDS publishes every minute).
Aurora's storage grows by itself: a cluster is judged on CPU alone. No datapoint at all is `unknown` (a new or
stopped instance, or metrics not readable), never `ok`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dbops.aws import cloudwatch
from dbops.aws.rds import Kind, describe
from dbops.config.thresholds import Thresholds
from dbops.health.model import Finding, Status
from dbops.health.thresholds import grade, grade_low
from dbops.text import human_bytes

RDS_METRICS = "rds_metrics"
WINDOW = timedelta(minutes=15)
PERIOD_S = 300
GIB = 1024**3


def _latest(kind: Kind, identifier: str, name: str, statistic: str, now: datetime) -> float | None:
    dimension = "DBClusterIdentifier" if kind == "cluster" else "DBInstanceIdentifier"
    # the newest datapoint, timestamped at or just before now
    window = (now - WINDOW, now + timedelta(minutes=1))
    return cloudwatch.newest_datapoint("AWS/RDS", name, {dimension: identifier}, statistic, window, PERIOD_S)


def probe_rds_metrics(kind: Kind, identifier: str, thresholds: Thresholds, now: datetime) -> Finding:
    t = thresholds
    now = now.astimezone(UTC)
    cpu = _latest(kind, identifier, "CPUUtilization", "Maximum", now)
    connections = _latest(kind, identifier, "DatabaseConnections", "Maximum", now)
    values: dict[str, float | int | None] = {
        "rds_cpu_utilization_percent": None if cpu is None else round(cpu, 1),
        "rds_database_connections": None if connections is None else int(connections),
    }
    statuses = [grade(cpu, t.rds_cpu_warn_percent, t.rds_cpu_critical_percent)]
    parts = [f"CPU {cpu:.0f} %" if cpu is not None else "CPU not reported"]
    if connections is not None:
        parts.append(f"{connections:.0f} connections")
    if kind == "instance":
        free = _latest(kind, identifier, "FreeStorageSpace", "Minimum", now)
        instance = describe("instance", identifier) or {}
        allocated = int(instance.get("AllocatedStorage") or 0) * GIB
        percent = 100.0 * free / allocated if free is not None and allocated else None
        values["rds_free_storage_bytes"] = None if free is None else int(free)
        values["rds_free_storage_percent"] = None if percent is None else round(percent, 1)
        statuses.append(grade_low(percent, t.rds_free_storage_warn_percent, t.rds_free_storage_critical_percent))
        if free is None:
            parts.insert(0, "free storage not reported")
        else:
            share = f" ({percent:.0f} % of {human_bytes(allocated)})" if percent is not None else ""
            parts.insert(0, f"{human_bytes(free)} free storage{share}")
    if all(v is None for v in values.values()):
        return Finding(
            status=Status.UNKNOWN,
            message=f"RDS {kind} {identifier}: no CloudWatch data in the last {WINDOW.seconds // 60} minutes",
            values=values,
        )
    status = max(statuses, key=lambda s: s.rank)
    return Finding(
        status=status,
        message=f"RDS {kind} {identifier}: " + ", ".join(parts) + f" (warn below {t.rds_free_storage_warn_percent:g} % "
        f"free storage, above {t.rds_cpu_warn_percent:g} % CPU)",
        values=values,
    )
