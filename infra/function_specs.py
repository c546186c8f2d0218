"""What each dbops function is: its handler, sizing, bucket prefixes and kind (the specs Functions makes from)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from dbops import contract
from dbops.contract import (
    BACKUPS_PREFIX,
    DRILLS_PREFIX,
    HEALTH_PREFIX,
    REHEARSALS_PREFIX,
    RESTORE_PROGRESS_PREFIX,
    RESTORES_PREFIX,
    RETENTION_LEDGER_PREFIX,
)
from infra.constants import (
    BACKUP_SIZING,
    HEALTH_SIZING,
    MAINTENANCE_SIZING,
    RESTORE_STEP_EPHEMERAL_MB,
    RESTORE_STEP_SIZING,
    Sizing,
)

RESTORE_PREFIXES = (BACKUPS_PREFIX, RESTORES_PREFIX, DRILLS_PREFIX, RESTORE_PROGRESS_PREFIX)
# the backups a restore writes: its safety backup and a point-in-time one (both locked), and the verification record
# of the backup it restores (unlocked, dbops.backup.catalog.record_verification); never another backup's objects
RESTORE_BACKUP_WRITES = (
    f"{BACKUPS_PREFIX}prerestore/*",
    f"{BACKUPS_PREFIX}pointintime/*",
    f"{BACKUPS_PREFIX}*/{contract.VERIFICATION_RECORD}",
)
RESTORE_BACKUP_LOCKS = RESTORE_BACKUP_WRITES[:2]


@dataclass(frozen=True)
class BucketAccess:
    """Which keys of the backup bucket a function reads, writes, tags, locks and lists (S3 key patterns, prefixes).
    `lock`: the backups it writes with their Object Lock retention (and may lengthen it on): PutObjectRetention."""

    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    tag: tuple[str, ...] = ()
    lock: tuple[str, ...] = ()
    list_prefixes: tuple[str, ...] = ()

    @property
    def kms_actions(self) -> tuple[str, ...]:
        actions: list[str] = []
        if self.write:
            # SSE-KMS: new objects need a data key; completing a multipart upload decrypts it
            actions += ["kms:GenerateDataKey", "kms:Decrypt"]
        elif self.read:
            actions.append("kms:Decrypt")
        return tuple(actions)


@dataclass(frozen=True)
class FunctionSpec:
    construct_id: str
    handler: str
    description: str
    sizing: Sizing
    bucket: BucketAccess = BucketAccess()
    database_secrets: bool = True
    retry_attempts: int = 0
    ephemeral_storage_mb: int = 512
    environment: Mapping[str, str] = field(default_factory=dict)
    # which cdk.json `functions.<kind>` setting sizes it
    kind: Literal["backup", "health", "maintenance", "restore"] = "restore"
    # invoked asynchronously by an EventBridge schedule (else synchronously by a state machine): its failed
    # invokes go to the scheduled invokes' dead-letter queue
    scheduled: bool = False


BACKUP = FunctionSpec(
    construct_id="Backup",
    handler="handlers.backup.handler",
    description="dbops: pg_dump | zstd | S3 multipart, manifest last (nightly, predeploy, manual)",
    sizing=BACKUP_SIZING,
    # reads the catalog and tags backups for retention (dbops.backup.retention) after a backup, keeping what it saw
    # of the tags in the retention ledger
    bucket=BucketAccess(
        read=(f"{BACKUPS_PREFIX}*", f"{RETENTION_LEDGER_PREFIX}*"),
        write=(f"{BACKUPS_PREFIX}*", f"{RETENTION_LEDGER_PREFIX}*"),
        tag=(f"{BACKUPS_PREFIX}*",),
        lock=(f"{BACKUPS_PREFIX}*",),
        list_prefixes=(BACKUPS_PREFIX, RETENTION_LEDGER_PREFIX),
    ),
    retry_attempts=1,
    kind="backup",
)
HEALTH = FunctionSpec(
    construct_id="Health",
    handler="handlers.health.handler",
    description="dbops: health probes as EMF metrics, backup freshness from the catalog",
    sizing=HEALTH_SIZING,
    # reads the catalog (backup freshness); keeps the temp_files probe's counters under health/
    bucket=BucketAccess(
        read=(f"{BACKUPS_PREFIX}*", f"{HEALTH_PREFIX}*"),
        write=(f"{HEALTH_PREFIX}*",),
        list_prefixes=(BACKUPS_PREFIX, HEALTH_PREFIX),
    ),
    kind="health",
    scheduled=True,
)
MAINTENANCE = FunctionSpec(
    construct_id="Maintenance",
    handler="handlers.maintenance.handler",
    description="dbops: ANALYZE, VACUUM, REINDEX CONCURRENTLY, retention cleanup and archive",
    sizing=MAINTENANCE_SIZING,
    kind="maintenance",
    scheduled=True,
)


def restore_step_spec(
    step: str, environment: Mapping[str, str] | None = None, description: str | None = None, scheduled: bool = False
) -> FunctionSpec:
    """A restore step's function (`handlers.restore.<step>`): reads backups, writes safety (and point-in-time)
    backups, verification records and the restore and drill records; no other object under backups/."""
    name = "".join(part.capitalize() for part in step.split("_"))
    prefixes = RESTORE_PREFIXES
    return FunctionSpec(
        construct_id=f"Restore{name}",
        handler=f"handlers.restore.{step}",
        description=description or f"dbops: restore workflow step {step}",
        sizing=RESTORE_STEP_SIZING,
        bucket=BucketAccess(
            read=tuple(f"{p}*" for p in prefixes),
            write=(*RESTORE_BACKUP_WRITES, *(f"{p}*" for p in prefixes if p != BACKUPS_PREFIX)),
            lock=RESTORE_BACKUP_LOCKS,
            list_prefixes=prefixes,
        ),
        ephemeral_storage_mb=RESTORE_STEP_EPHEMERAL_MB,
        environment=dict(environment or {}),
        scheduled=scheduled,
    )


def rehearsal_step_spec(step: str) -> FunctionSpec:
    """A rehearsal step's function (`handlers.rehearsal.<step>`): reads backups (the one it restores), reads and
    writes the rehearsal's files under rehearsals/."""
    name = "".join(part.capitalize() for part in step.split("_"))
    return FunctionSpec(
        construct_id=f"Rehearsal{name}",
        handler=f"handlers.rehearsal.{step}",
        description=f"dbops: migration rehearsal step {step}",
        sizing=RESTORE_STEP_SIZING,
        bucket=BucketAccess(
            read=(f"{BACKUPS_PREFIX}*", f"{REHEARSALS_PREFIX}*"),
            write=(f"{REHEARSALS_PREFIX}*",),
            list_prefixes=(BACKUPS_PREFIX,),
        ),
        ephemeral_storage_mb=RESTORE_STEP_EPHEMERAL_MB,
        environment={contract.ENV_WORK_DIR: "/tmp"},
    )
