"""cdk.json `replication`: a second copy of the backups in another region (infra/replication.py), off unless given.

The replica bucket lives in the DR stack (`<stack_name>-dr`, same app, the DR region); the main stack finds it by
name, not by a cross-region reference: the bucket's name and its key's alias are derived from the stack name, the
DR account and the DR region, so both stacks know them at synth time without an AWS account (see README "Second
copy in another region")."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from dbops.config.databases import SslMode
from infra.database_settings import SECRET_ARN, DatabaseSettings, VpcPlacement
from infra.schedule_settings import check_schedule
from infra.settings_model import SettingsModel

RULE_ID = "backups-to-dr"  # the backup bucket's replication rule (also a dimension of its metrics)
BUCKET_NAME_MAX = 63
ACCOUNT_ID_LENGTH = 12


class DisasterDatabase(SettingsModel):
    """A database in the DR region the DR stack restores the replicated backups of `name` (one of `databases[]`)
    into: its server's secret there (RDS format), TLS and VPC placement as for `databases[]`."""

    name: str = Field(description="the configured database (databases[].name) whose replicated backups it takes")
    secret_arn: str = Field(pattern=SECRET_ARN, description="the DR server's secret, in the DR region")
    secret_kms_key_arn: str | None = Field(
        default=None, pattern=r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[0-9a-f-]{36}$"
    )
    sslmode: SslMode = "verify-full"
    ca_bundle: str | None = None
    vpc: VpcPlacement | None = None

    def settings(self, source: DatabaseSettings) -> DatabaseSettings:
        """This database as the DR stack's functions see it: the DR server, the source's restore checks; no
        application hook, maintenance, rehearsal or RDS point-in-time (those belong to the main region)."""
        return DatabaseSettings.model_validate(
            {
                **self.model_dump(exclude_none=True),
                "restore_checks": source.restore_checks,
                "backup": source.backup.model_dump(exclude={"schedule"}),
            }
        )


class DisasterRestoreSettings(SettingsModel):
    """The DR stack's restore state machine (README "Restoring in the DR region") and its weekly disaster drill."""

    databases: list[DisasterDatabase] = Field(min_length=1)
    drill_schedule: str | None = Field(
        default="cron(0 8 ? * SUN *)",
        description="the disaster drill (every DR database, newest replicated verified backup); 'off': none",
    )
    rpo_alarm_hours: float = Field(
        default=48,
        gt=0,
        le=168,
        description="DisasterRecoveryPointOld: the drill's replicated backup was older than this when it ran",
    )

    @field_validator("drill_schedule")
    @classmethod
    def _expression(cls, value: str | None) -> str | None:
        return None if value is None or value == "off" else check_schedule(value)

    @model_validator(mode="after")
    def _unique(self) -> DisasterRestoreSettings:
        names = [db.name for db in self.databases]
        if len(set(names)) != len(names):
            raise ValueError("replication.restore.databases: a database is named twice")
        return self


class ReplicationSettings(SettingsModel):
    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$", description="the DR region, e.g. us-west-2")
    lag_alarm_minutes: int = Field(
        default=60, ge=1, le=1440, description="ReplicationLag alarms when an object waits longer than this"
    )
    account: str | None = Field(
        default=None, pattern=r"^\d{12}$", description="the DR account; absent: the stack's own account"
    )
    bucket_name: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        description="the replica bucket's name; absent: <stack_name>-replica-<account>-<region>",
    )
    restore: DisasterRestoreSettings | None = Field(
        default=None,
        description="restores in the DR region (the DR stack's restore state machine and disaster drill); absent: "
        "the DR stack holds only the replica bucket and key",
    )

    def stack_name(self, stack_name: str) -> str:
        """The DR stack's name."""
        return f"{stack_name}-dr"

    def role_name(self, stack_name: str) -> str:
        """The replication role's name: fixed, so a cross-account DR stack can name it before it exists."""
        return f"{stack_name}-replication"

    def key_alias(self, stack_name: str) -> str:
        """The replica key's alias: the main stack names the key by it (its ARN is only known once made)."""
        return f"alias/{stack_name}-replica"

    def bucket_name_for(self, stack_name: str, account: str) -> str:
        """The replica bucket's name; `account` may be a token (the DR stack's own account, resolved at deploy)."""
        return self.bucket_name or f"{stack_name.lower()}-replica-{account}-{self.region}"

    def problems(self, stack_name: str) -> list[str]:
        """What is wrong with these settings for this stack name (checked with the stack's settings)."""
        found = []
        longest = len(self.bucket_name_for(stack_name, "0" * ACCOUNT_ID_LENGTH))
        if longest > BUCKET_NAME_MAX:
            found.append(
                f"replication: the replica bucket's name would be {longest} characters (S3 allows "
                f"{BUCKET_NAME_MAX}): give replication.bucket_name"
            )
        if len(self.role_name(stack_name)) > 64:
            found.append("replication: the stack name is too long for the replication role's name (64 characters)")
        for db in self.restore.databases if self.restore else []:
            where = f"replication.restore.databases ({db.name})"
            secret_region = db.secret_arn.split(":")[3]
            if secret_region != self.region:
                found.append(
                    f"{where}: its secret is in {secret_region}, not the DR region {self.region}: give the DR "
                    "server's secret there (a restore in the DR region must not need the lost one)"
                )
            if db.sslmode in ("verify-ca", "verify-full") and db.ca_bundle is None:
                found.append(f"{where}: sslmode {db.sslmode} needs ca_bundle (for RDS: the DR region's CA bundle)")
        if self.restore is not None:
            vpcs = {db.vpc.vpc_id for db in self.restore.databases if db.vpc is not None}
            if len(vpcs) > 1 or (vpcs and any(db.vpc is None for db in self.restore.databases)):
                found.append(
                    "replication.restore.databases: the DR functions run in one place: one VPC for all or none"
                )
        return found
