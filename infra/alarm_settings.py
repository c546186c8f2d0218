"""cdk.json `alarms` (topic or email, the stack's thresholds) and a database's own alarm thresholds."""

from __future__ import annotations

from pydantic import Field, model_validator

from infra.settings_model import SettingsModel


class AlarmThresholds(SettingsModel):
    """Defaults from the guide's RPO (24 h, plus 2 h for the nightly run) and check_postgres' critical levels."""

    backup_age_hours: float = Field(
        default=26,
        gt=0,
        le=168,
        description="BackupMissing: no backup succeeded for this long (CloudWatch evaluates at most 7 days); "
        "BackupStale: the newest verified backup is older than this",
    )
    connections_used_percent: float = Field(default=95, gt=0, le=100)
    blocked_queries: int = Field(default=1, ge=1)
    blocked_minutes: int = Field(default=15, ge=5, description="how long queries stay blocked before it alarms")
    xid_wraparound_age: int = Field(default=1_400_000_000, gt=0)
    restorable_lag_minutes: float = Field(
        default=30, gt=0, description="PointInTimeLag: the RDS instance's LatestRestorableTime older than this"
    )


class DatabaseAlarms(SettingsModel):
    """A database's own alarm thresholds, each in place of the stack's `alarms.thresholds` one."""

    thresholds: AlarmThresholds = AlarmThresholds()


class AlarmSettings(SettingsModel):
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    topic_arn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]+$")
    thresholds: AlarmThresholds = AlarmThresholds()

    @model_validator(mode="after")
    def _one_destination(self) -> AlarmSettings:
        if self.email and self.topic_arn:
            raise ValueError(
                "give either email (dbops creates an encrypted topic and subscribes it) or topic_arn "
                "(an existing topic), not both"
            )
        return self
