"""cdk.json `retention_days`: how long backups (S3 lifecycle per kind, and per class of nightly backups), access logs
and log groups are kept; cdk.json `backup_lock`: S3 Object Lock on the backups."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from dbops import contract
from dbops.config.backup import DEFAULT_KEEP, BackupLock
from dbops.contract import BACKUPS_PREFIX, CLASS_TAG, CLASSED_KIND, EXPIRABLE_TAG, RETAINED_KINDS
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
    backup_class: str | None = Field(default=None, description="weekly, monthly: a class of nightly backups")

    @property
    def rule_id(self) -> str:
        return f"expire-{self.kind}" + (f"-{self.backup_class}" if self.backup_class else "")


class RetentionDays(SettingsModel):
    """How long things are kept. Backups: S3 lifecycle per kind (prefix backups/<kind>/); nightly and predeploy
    backups only once `keep_newest_verified` newer ones verified (dbops.backup.retention tags them)."""

    nightly: int = Field(default=30, ge=1)  # the guide: 30 days
    weekly: int | None = Field(
        default=None, ge=1, description="the first verified nightly backup of each ISO week; absent: no weeklies"
    )
    monthly: int | None = Field(
        default=None, ge=1, description="the first verified nightly backup of each month; absent: no monthlies"
    )
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

    @model_validator(mode="after")
    def _classes_outlive_nightly(self) -> RetentionDays:
        for name, days in (("weekly", self.weekly), ("monthly", self.monthly)):
            if days is not None and days <= self.nightly:
                raise ValueError(f"{name} ({days} days) must keep backups longer than nightly ({self.nightly} days)")
        if self.weekly is not None and self.monthly is not None and self.monthly < self.weekly:
            raise ValueError(f"monthly ({self.monthly} days) must keep backups at least as long as weekly")
        return self

    def classes(self) -> dict[str, int]:
        """The configured classes of nightly backups beyond nightly itself, with their ages."""
        return {name: days for name, days in (("weekly", self.weekly), ("monthly", self.monthly)) if days}

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
        expiries = [
            BackupExpiry(kind=kind, prefix=prefix, days=days, tags=released if kind in RETAINED_KINDS else {})
            for prefix, days in self.backup_days().items()
            if days is not None
            for kind in [prefix.rstrip("/").rsplit("/", 1)[-1]]
        ]
        if not self.classes():
            return expiries
        # grandfather-father-son: the nightly rule for the nightly class only, and one rule per further class
        at = next(i for i, e in enumerate(expiries) if e.kind == CLASSED_KIND)
        nightly = expiries[at] = expiries[at].model_copy(update={"tags": released | {CLASS_TAG: "nightly"}})
        for name, days in self.classes().items():
            tags = released | {CLASS_TAG: name}
            expiries.append(
                BackupExpiry(kind=CLASSED_KIND, prefix=nightly.prefix, days=days, tags=tags, backup_class=name)
            )
        return expiries

    def function_environment(self, lock: BackupLockSettings | None) -> dict[str, str]:
        """What the functions read of retention: the classes' ages and the lock (each kind locked for its age, a
        nightly backup for the lock's days)."""
        names = {"weekly": contract.ENV_RETENTION_WEEKLY_DAYS, "monthly": contract.ENV_RETENTION_MONTHLY_DAYS}
        env = {names[name]: str(days) for name, days in self.classes().items()}
        if lock is not None:
            ages = {e.kind: e.days for e in self.backup_expiries() if e.kind != CLASSED_KIND}
            env[contract.ENV_BACKUP_LOCK] = BackupLock(mode=lock.mode, days=lock.days, kind_days=ages).model_dump_json()
        return env


class BackupLockSettings(SettingsModel):
    """cdk.json `backup_lock`: the bucket is created with S3 Object Lock and every backup object is written locked:
    `governance` (an identity with s3:BypassGovernanceRetention can still delete it) or `compliance` (nobody can,
    not even the account's root, until it ends), a nightly backup for `days`, another kind for its age."""

    mode: Literal["governance", "compliance"]
    days: int = Field(ge=1, le=36500)
