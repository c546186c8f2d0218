"""The RDS instance's (or Aurora cluster's) engine minor version against the newest RDS offers for its major:
minor releases carry the security and data-corruption fixes, and RDS retires old minors on its own schedule."""

from __future__ import annotations

from datetime import datetime

from dbops.aws.rds import Kind, describe, engine_versions
from dbops.config.thresholds import Thresholds
from dbops.health.model import Finding, Status
from dbops.health.thresholds import grade

RDS_ENGINE_VERSION = "rds_engine_version"


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else -1 for part in version.split("."))


def probe_rds_engine_version(kind: Kind, identifier: str, thresholds: Thresholds, now: datetime) -> Finding:
    found = describe(kind, identifier)
    if found is None:
        return Finding(status=Status.UNKNOWN, message=f"RDS {kind} {identifier} does not exist")
    engine, version = str(found.get("Engine", "")), str(found.get("EngineVersion", ""))
    major = version.split(".")[0]
    offered = engine_versions(engine)
    same_major = sorted({v for v in offered if v.split(".")[0] == major}, key=_version_key)
    if not same_major:
        return Finding(
            status=Status.UNKNOWN, message=f"RDS offers no {engine} {major}.x versions to compare {version} with"
        )
    newer = [v for v in same_major if _version_key(v) > _version_key(version)]
    auto = found.get("AutoMinorVersionUpgrade")
    status = grade(len(newer), thresholds.rds_minor_versions_behind_warn, thresholds.rds_minor_versions_behind_critical)
    upgrade = "" if not newer else f"; newest {same_major[-1]}" + ("" if auto else " (auto minor upgrade is off)")
    return Finding(
        status=status,
        message=f"{engine} {version}: {len(newer)} newer minor version{'s' if len(newer) != 1 else ''} of {major} on "
        f"RDS{upgrade}",
        values={"rds_minor_versions_behind": len(newer)},
    )
