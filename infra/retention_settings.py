"""cdk.json `retention_days`: how long backups (S3 lifecycle per kind), access logs and log groups are kept."""

from __future__ import annotations

from pydantic import Field, field_validator

from dbops.config.backup import DEFAULT_KEEP
from dbops.contract import BACKUPS_PREFIX, EXPIRABLE_TAG, RETAINED_KINDS
from infra.settings_model import SettingsModel

# CloudWatch Logs accepts only these retention periods
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)


class BackupExpiry(SettingsModel):
    """One backup kind's lifecycle expiry: an object under `prefix` carrying every tag in `tags` (none: any
    object) expires `days` after it was written. One definition for the bucket's rules and the tests'
    simulation of them."""

    kind: str
    prefix: str
    days: int
    tags: dict[str, str] = Field(default_factory=dict)


class RetentionDays(SettingsModel):
    """How long things are kept. Backups: S3 lifecycle per kind (prefix backups/<kind>/); nightly and predeploy
    backups only once `keep_newest_verified` newer ones verified (dbops.backup.retention tags them)."""

    nightly: int = Field(default=30, ge=1)  # the guide: 30 days
    predeploy: int = Field(default=90, ge=1)
    prerestore: int = Field(default=30, ge=1)
    manual: int | None = Field(default=None, ge=1, description="absent: manual backups never expire")
    pointintime: int = Field(default=30, ge=1, description="the dumps point-in-time restores took of their moment")
    keep_newest_verified: int = Field(
        default=DEFAULT_KEEP,
        ge=1,
        description="nightly and predeploy: the newest this many verified backups never expire, whatever their age",
    )
    noncurrent_versions: int = Field(default=7, ge=1, description="deleted or overwritten versions kept this long")
    access_logs: int = Field(default=365, ge=1)
    logs: int = Field(default=90, description="CloudWatch Logs retention of the functions' log groups")

    @field_validator("logs")
    @classmethod
    def _log_retention(cls, value: int) -> int:
        if value not in LOG_RETENTION_DAYS:
            raise ValueError(f"{value} is not a CloudWatch Logs retention; use one of {LOG_RETENTION_DAYS}")
        return value

    def backup_days(self) -> dict[str, int | None]:
        return {
            f"{BACKUPS_PREFIX}nightly/": self.nightly,
            f"{BACKUPS_PREFIX}predeploy/": self.predeploy,
            f"{BACKUPS_PREFIX}prerestore/": self.prerestore,
            f"{BACKUPS_PREFIX}manual/": self.manual,
            f"{BACKUPS_PREFIX}pointintime/": self.pointintime,
        }

    def backup_expiries(self) -> list[BackupExpiry]:
        """The kinds that expire: nightly and predeploy only once dbops tagged a backup expirable, the others
        by age alone."""
        released = {EXPIRABLE_TAG: "true"}
        return [
            BackupExpiry(kind=kind, prefix=prefix, days=days, tags=released if kind in RETAINED_KINDS else {})
            for prefix, days in self.backup_days().items()
            if days is not None
            for kind in [prefix.rstrip("/").rsplit("/", 1)[-1]]
        ]
