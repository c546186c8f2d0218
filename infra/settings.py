"""The stack's settings: the "dbops" object in cdk.json's context, parsed once into pydantic models.

A mistake is reported with the setting's path and what is wrong with it, before any construct is made.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dbops.config.backup import DEFAULT_KEEP
from dbops.config.databases import RDS_INSTANCE_ID, AppHook
from dbops.config.maintenance import MaintenanceConfig
from dbops.config.thresholds import Thresholds
from dbops.contract import BACKUPS_PREFIX, EXPIRABLE_TAG, MAINTENANCE_TASKS, RETAINED_KINDS
from infra.constants import CERTS_DIR_IN_LAMBDA, CONTEXT_KEY
from infra.restore_settings import RestoreSettings

SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
Architecture = Literal["arm64", "x86_64"]

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

_RATE = re.compile(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)")
_CRON = re.compile(r"cron\(([^()]+)\)")


class SettingsError(ValueError):
    """The cdk.json settings are invalid; the message names every wrong setting."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_schedule(expression: str) -> str:
    """An EventBridge schedule expression: rate(N unit) or cron(6 fields, one day field '?')."""
    rate = _RATE.fullmatch(expression)
    if rate:
        value, unit = int(rate.group(1)), rate.group(2)
        if value < 1:
            raise ValueError(f"{expression!r}: the rate must be at least 1")
        if (value == 1) != (not unit.endswith("s")):
            raise ValueError(f"{expression!r}: EventBridge wants 'rate(1 {unit.rstrip('s')})' or 'rate(N {unit}s)'")
        return expression
    cron = _CRON.fullmatch(expression)
    if cron:
        fields = cron.group(1).split()
        if len(fields) != 6:
            raise ValueError(
                f"{expression!r}: an EventBridge cron has 6 fields (minutes hours day-of-month month "
                f"day-of-week year), not {len(fields)}"
            )
        if "?" not in (fields[2], fields[4]):
            raise ValueError(f"{expression!r}: day-of-month or day-of-week must be '?'")
        return expression
    raise ValueError(f"{expression!r} is not an EventBridge schedule: use rate(5 minutes) or cron(0 2 * * ? *)")


def rate_hours(expression: str) -> float | None:
    """The interval of a rate() schedule in hours; None for a cron (its gaps vary)."""
    rate = _RATE.fullmatch(expression)
    if rate is None:
        return None
    per_unit = {"minute": 1 / 60, "hour": 1.0, "day": 24.0}
    return int(rate.group(1)) * per_unit[rate.group(2).rstrip("s")]


def _resource_ids(values: list[str], prefix: str, what: str) -> list[str]:
    """EC2 ids such as subnet-0123abcd or sg-0123abcd0123abcd0 (8 or 17 hex digits)."""
    for item in values:
        if not re.fullmatch(rf"{prefix}-[0-9a-f]{{8}}([0-9a-f]{{9}})?", item):
            raise ValueError(f"{item!r} is not {what} ({prefix}-0123abcd...)")
    return values


class VpcPlacement(_Model):
    """Where the database is reachable: the functions run in these subnets with these security groups."""

    vpc_id: str = Field(pattern=r"^vpc-[0-9a-f]{8}([0-9a-f]{9})?$")
    subnet_ids: list[str] = Field(min_length=1)
    security_group_ids: list[str] = Field(min_length=1)

    @field_validator("subnet_ids")
    @classmethod
    def _subnets(cls, value: list[str]) -> list[str]:
        return _resource_ids(value, "subnet", "a subnet id")

    @field_validator("security_group_ids")
    @classmethod
    def _groups(cls, value: list[str]) -> list[str]:
        return _resource_ids(value, "sg", "a security group id")


class AlarmThresholds(_Model):
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


class DatabaseAlarms(_Model):
    """A database's own alarm thresholds, each in place of the stack's `alarms.thresholds` one."""

    thresholds: AlarmThresholds = AlarmThresholds()


BackupRunner = Literal["auto", "lambda", "fargate"]


class DatabaseBackup(_Model):
    """When a database's scheduled backup runs, and where (dbops.postgres.connection.DatabaseConfig.backup_runner)."""

    schedule: str | None = Field(
        default=None,
        description="an EventBridge expression for this database's own nightly backup, or 'off'; absent: the "
        "stack's schedules.backup",
    )
    runner: BackupRunner = Field(
        default="auto", description="lambda, fargate, or auto (decided from its last committed backup)"
    )

    @field_validator("schedule")
    @classmethod
    def _expression(cls, value: str | None) -> str | None:
        return value if value is None or value == "off" else check_schedule(value)


def _duration(value: str | float) -> float:
    from dbops.config.durations import parse_duration

    seconds = parse_duration(value) if isinstance(value, str) else float(value)
    if seconds <= 0:
        raise ValueError(f"{value!r}: give a duration longer than zero")
    return seconds


class DatabaseRehearsal(_Model):
    """The restore state machine's `mode: rehearse` for this database: the application's migration image, run as
    an ECS Fargate task (with dbops' watcher beside it, from restore_task_image) against a scratch copy of a backup.
    The image must be built for the stack's architecture. Its URL comes from a secret dbops fills per rehearsal."""

    image: str = Field(min_length=1, description="the application's migration image (ECR or any registry)")
    command: list[str] = Field(default=["alembic", "upgrade", "head"], min_length=1)
    downgrade: list[str] | None = Field(default=None, description="default: alembic downgrade <revision before>")
    skip_downgrade: bool = False
    url_env: str = Field(default="DATABASE_URL", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    environment: dict[str, str] = Field(default_factory=dict, description="more variables (never a secret)")
    working_directory: str | None = None
    version_table: str | None = "alembic_version"
    max_lock: str | float = Field(default=5.0, description="longest lock the application may wait behind (5s)")
    max_duration: str | float = Field(default=600.0, description="each run is stopped after this long (10m)")
    interval: str | float = Field(default=0.02, description="how often the watcher samples the sessions (20ms)")
    cpu: int = Field(default=1024, description="the task's CPU units (Fargate: 256 to 16384)")
    memory_mib: int = Field(default=2048, ge=512, le=122880)

    @field_validator("max_lock", "max_duration", "interval")
    @classmethod
    def _durations(cls, value: str | float) -> float:
        return _duration(value)

    def function_config(self, secret_name: str) -> dict[str, Any]:
        """dbops.postgres.connection.RehearsalConfig: what the rehearsal steps read."""
        return {
            "secret_id": secret_name,
            "command": self.command,
            "downgrade": self.downgrade,
            "skip_downgrade": self.skip_downgrade,
            "url_env": self.url_env,
            "version_table": self.version_table,
            "max_lock_s": self.max_lock,
            "max_duration_s": self.max_duration,
            "interval_s": self.interval,
        }


def rehearsal_secret_name(stack_name: str, database: str) -> str:
    """The secret a database's rehearsals put the migration's URL in (one per database: one rehearsal at a time)."""
    return f"{stack_name}/{database}/rehearsal"


class FunctionSizing(_Model):
    memory_mb: int | None = Field(default=None, ge=128, le=10240, description="absent: dbops' own sizing")


class FunctionsSettings(_Model):
    """Per function, not per database: one function serves every database (a database too large for the backup
    function's memory or 15 minutes backs up on Fargate: databases[].backup.runner)."""

    backup: FunctionSizing = FunctionSizing()
    health: FunctionSizing = FunctionSizing()
    maintenance: FunctionSizing = FunctionSizing()
    restore: FunctionSizing = FunctionSizing()  # every restore step, and the daily drop of expired copies


class DatabaseSettings(_Model):
    """One database dbops looks after. Host, port, user and password come from the secret (RDS format)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$")
    secret_arn: str = Field(
        pattern=r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}$",
        description="the complete ARN, with the 6-character suffix Secrets Manager adds",
    )
    secret_kms_key_arn: str | None = Field(
        default=None,
        pattern=r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[0-9a-f-]{36}$",
        description="only when the secret is encrypted with a customer-managed key",
    )
    sslmode: SslMode = "verify-full"
    ca_bundle: str | None = Field(
        default=None,
        description="a PEM file in certs_dir (shipped to /opt/certs), or 'system' for the runtime's CA store",
    )
    vpc: VpcPlacement | None = None
    app_hook: AppHook | None = Field(
        default=None, description="stop/start the application around a restore: an SSM parameter or an event"
    )
    restore_checks: list[str] = Field(default_factory=list, description="SQL checks a staged restore must pass")
    maintenance: MaintenanceConfig | None = Field(
        default=None,
        description="its retention rules, timeouts and thresholds (dbops.maintenance.MaintenanceConfig); without "
        "rules, cleanup and archive have nothing to do on it",
    )
    health_thresholds: Thresholds | None = Field(
        default=None, description="its health thresholds (dbops.health.thresholds.Thresholds), over the defaults"
    )
    alarms: DatabaseAlarms | None = Field(default=None, description="its alarm thresholds, over alarms.thresholds")
    backup: DatabaseBackup = DatabaseBackup()
    rds_instance_id: str | None = Field(
        default=None,
        pattern=RDS_INSTANCE_ID,
        description="the RDS instance it runs on: restores as of a moment (point-in-time) and their readiness",
    )
    rds_cluster_id: str | None = Field(
        default=None, pattern=RDS_INSTANCE_ID, description="the Aurora cluster it runs on, instead of an instance"
    )
    rehearsal: DatabaseRehearsal | None = Field(
        default=None, description="migration rehearsals in the restore state machine (mode rehearse)"
    )

    @field_validator("maintenance", mode="before")
    @classmethod
    def _own_rules_only(cls, value: Any) -> Any:
        """A database runs the rules it names, never the guide's defaults (those name Sprint Reports' tables)."""
        if isinstance(value, Mapping) and "rules" not in value:
            return {**value, "rules": []}
        return value

    @field_validator("ca_bundle")
    @classmethod
    def _bundle_name(cls, value: str | None) -> str | None:
        if value is not None and value != "system" and not re.fullmatch(r"[A-Za-z0-9_.-]+\.(pem|crt)", value):
            raise ValueError(f"{value!r}: give a .pem or .crt file name inside certs_dir, or 'system'")
        return value

    @model_validator(mode="after")
    def _one_rds_source(self) -> DatabaseSettings:
        if self.rds_instance_id and self.rds_cluster_id:
            raise ValueError("give rds_instance_id or rds_cluster_id (Aurora), not both")
        return self

    @property
    def on_rds(self) -> bool:
        return bool(self.rds_instance_id or self.rds_cluster_id)

    @model_validator(mode="after")
    def _verify_needs_ca(self) -> DatabaseSettings:
        if self.sslmode in ("verify-ca", "verify-full") and self.ca_bundle is None:
            raise ValueError(f"sslmode {self.sslmode} needs ca_bundle (for RDS: the region's CA bundle from AWS)")
        return self

    @property
    def sslrootcert(self) -> str | None:
        if self.ca_bundle is None or self.ca_bundle == "system":
            return self.ca_bundle
        return f"{CERTS_DIR_IN_LAMBDA}/{self.ca_bundle}"

    def function_config(self) -> dict[str, Any]:
        """This database as the functions read it (dbops.postgres.connection.DatabaseConfig in DBOPS_DATABASES)."""
        config: dict[str, Any] = {"name": self.name, "secret_id": self.secret_arn, "sslmode": self.sslmode}
        if self.sslrootcert is not None:
            config["sslrootcert"] = self.sslrootcert
        if self.app_hook is not None:
            config["app_hook"] = self.app_hook.model_dump(exclude_defaults=True)
        if self.restore_checks:
            config["restore_checks"] = self.restore_checks
        if self.backup.runner != "auto":
            config["backup_runner"] = self.backup.runner
        if self.rds_instance_id is not None:
            config["rds_instance_id"] = self.rds_instance_id
        if self.rds_cluster_id is not None:
            config["rds_cluster_id"] = self.rds_cluster_id
        return config

    def maintenance_config(self) -> dict[str, Any]:
        """Its dbops.maintenance.MaintenanceConfig as the maintenance function reads it: what cdk.json sets, and
        no rules when it sets none."""
        if self.maintenance is None:
            return {"rules": []}
        return self.maintenance.model_dump(mode="json", by_alias=True, exclude_unset=True)


class Schedules(_Model):
    """EventBridge schedule expressions (UTC); "off" turns a schedule off (CDK context drops JSON nulls)."""

    backup: str | None = "cron(0 2 * * ? *)"  # nightly, 02:00
    health: str | None = "rate(5 minutes)"
    analyze: str | None = "cron(0 4 ? * SUN *)"  # weekly (the guide)
    vacuum: str | None = "cron(30 3 * * ? *)"  # nightly, acts only where dead tuples pass the threshold
    reindex: str | None = "cron(0 5 1 * ? *)"  # monthly, concurrently
    cleanup: str | None = "cron(0 4 ? * SAT *)"  # weekly retention cleanup
    archive: str | None = "cron(30 4 ? * SAT *)"  # weekly archive of old sprint data
    restore_drill: str | None = "cron(0 6 ? * SUN *)"  # weekly proof that the latest backup restores
    expired_copies: str | None = "cron(0 7 * * ? *)"  # daily: drop databases kept after restores once their time is up
    # daily: delete point-in-time restores' temporary instances an aborted or timed-out execution left
    temporary_instances: str | None = "cron(15 7 * * ? *)"

    @field_validator("*")
    @classmethod
    def _expression(cls, value: str | None) -> str | None:
        return None if value is None or value == "off" else check_schedule(value)

    def maintenance(self) -> dict[str, str | None]:
        return {task: getattr(self, task) for task in MAINTENANCE_TASKS}


class BackupExpiry(_Model):
    """One backup kind's lifecycle expiry: an object under `prefix` carrying every tag in `tags` (none: any
    object) expires `days` after it was written. One definition for the bucket's rules and the tests'
    simulation of them."""

    kind: str
    prefix: str
    days: int
    tags: dict[str, str] = Field(default_factory=dict)


class RetentionDays(_Model):
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


class AlarmSettings(_Model):
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


class BackupSettings(_Model):
    """The backup state machine (infra/backup_workflow.py): how many databases are backed up at once."""

    max_concurrency: int = Field(
        default=4,
        ge=1,
        le=40,
        description="the Map's MaxConcurrency: databases backed up at the same time, each in its own Backup "
        "invoke (an inline Map runs at most 40 at once)",
    )


class StackSettings(_Model):
    stack_name: str = Field(default="dbops", pattern=r"^[A-Za-z][A-Za-z0-9-]{0,127}$")
    architecture: Architecture = "arm64"
    databases: list[DatabaseSettings] = Field(min_length=1)
    certs_dir: str = Field(default="certs", description="folder of CA bundles, relative to cdk.json")
    schedules: Schedules = Schedules()
    retention_days: RetentionDays = RetentionDays()
    alarms: AlarmSettings = AlarmSettings()
    backup: BackupSettings = BackupSettings()
    functions: FunctionsSettings = FunctionsSettings()
    restore: RestoreSettings = RestoreSettings()  # infra/restore_settings.py
    restore_task_image: str | None = Field(
        default=None,
        description="container image (this repository's functions/ and layers) for restores too large for Lambda; "
        "absent: every restore stages in Lambda",
    )
    require_layers: bool = Field(
        default=False, description="fail the synth when `make layers` has not been run (set it for deploys)"
    )

    @model_validator(mode="after")
    def _unique_and_one_vpc(self) -> StackSettings:
        names = [db.name for db in self.databases]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"database names must be unique; repeated: {', '.join(duplicates)}")
        vpcs = {db.vpc.vpc_id for db in self.databases if db.vpc is not None}
        if len(vpcs) > 1:
            raise ValueError(
                f"the databases are in different VPCs ({', '.join(sorted(vpcs))}); the functions run in one VPC: "
                "deploy one dbops stack per VPC"
            )
        if vpcs and any(db.vpc is None for db in self.databases):
            raise ValueError("either every database has a vpc placement or none has: the functions run in one place")
        rehearsed = [db.name for db in self.databases if db.rehearsal is not None]
        if rehearsed and not (self.restore_task_image and vpcs):
            raise ValueError(
                f"databases {', '.join(rehearsed)} have rehearsal settings: rehearsals run on Fargate, in the "
                "databases' VPC, with dbops' watcher from restore_task_image; give both"
            )
        for database, expression in self.scheduled_backups().items():
            hours, limit = rate_hours(expression), self.alarm_thresholds(database).backup_age_hours
            if hours is not None and hours >= limit:
                raise ValueError(
                    f"database {database}: its backups run every {hours:g} hours ({expression}) but BackupMissing "
                    f"alarms after {limit:g} hours without one: raise its alarms.thresholds.backup_age_hours"
                )
        return self

    def placement(self) -> VpcPlacement | None:
        """The functions' placement: the databases' VPC, all their subnets and security groups (in order)."""
        placed = [db.vpc for db in self.databases if db.vpc is not None]
        if not placed:
            return None
        subnets = list(dict.fromkeys(s for p in placed for s in p.subnet_ids))
        groups = list(dict.fromkeys(g for p in placed for g in p.security_group_ids))
        return VpcPlacement(vpc_id=placed[0].vpc_id, subnet_ids=subnets, security_group_ids=groups)

    def ca_bundles(self) -> list[str]:
        return sorted({db.ca_bundle for db in self.databases if db.ca_bundle and db.ca_bundle != "system"})

    def functions_databases_json(self) -> str:
        """The DBOPS_DATABASES environment variable."""
        configs = []
        for db in self.databases:
            config = db.function_config()
            if db.rehearsal is not None:
                config["rehearsal"] = db.rehearsal.function_config(rehearsal_secret_name(self.stack_name, db.name))
            configs.append(config)
        return json.dumps(configs, separators=(",", ":"))

    def rehearsed(self) -> list[DatabaseSettings]:
        return [db for db in self.databases if db.rehearsal is not None]

    def maintenance_by_database_json(self) -> str:
        """DBOPS_MAINTENANCE_BY_DATABASE: every database's own maintenance configuration, by name."""
        return json.dumps({db.name: db.maintenance_config() for db in self.databases}, separators=(",", ":"))

    def health_thresholds_by_database_json(self) -> str:
        """DBOPS_HEALTH_THRESHOLDS_BY_DATABASE: the thresholds each database sets, by name."""
        return json.dumps(
            {
                db.name: db.health_thresholds.model_dump(mode="json", exclude_unset=True)
                for db in self.databases
                if db.health_thresholds is not None
            },
            separators=(",", ":"),
        )

    def alarm_thresholds(self, database: str) -> AlarmThresholds:
        """The stack's alarm thresholds with the ones this database sets in their place."""
        db = next(d for d in self.databases if d.name == database)
        if db.alarms is None:
            return self.alarms.thresholds
        own = db.alarms.thresholds.model_dump(exclude_unset=True)
        return AlarmThresholds.model_validate({**self.alarms.thresholds.model_dump(), **own})

    def scheduled_backups(self) -> dict[str, str]:
        """Each database whose backups run on a schedule, with its expression (BackupMissing watches these only)."""
        names = [db.name for db in self.databases]
        return {
            name: schedule.expression for schedule in self.backup_schedules() for name in (schedule.databases or names)
        }

    def backup_schedules(self) -> list[BackupSchedule]:
        """The scheduled nightly backups: the stack's schedule for every database without one of its own (no
        `databases`: all of them), then one per database with its own; "off" leaves a database out."""
        own = [(i, db) for i, db in enumerate(self.databases) if db.backup.schedule is not None]
        shared = [db.name for db in self.databases if db.backup.schedule is None]
        found = []
        if self.schedules.backup is not None and shared:
            found.append(
                BackupSchedule(
                    name="Backup", expression=self.schedules.backup, databases=None if not own else tuple(shared)
                )
            )
        for i, db in own:
            if db.backup.schedule != "off":
                assert db.backup.schedule is not None
                found.append(BackupSchedule(name=f"Backup{i}", expression=db.backup.schedule, databases=(db.name,)))
        return found


class BackupSchedule(_Model):
    """One EventBridge rule starting the backup state machine: `databases` absent means every database."""

    name: str
    expression: str
    databases: tuple[str, ...] | None = None


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        message = err["msg"].removeprefix("Value error, ")
        lines.append(f"  {CONTEXT_KEY}.{where}: {message}")
    return "\n".join(lines)


def load_settings(context: Mapping[str, Any] | None, base_dir: Path) -> tuple[StackSettings, Path]:
    """Parse the "dbops" context object; returns the settings and the resolved certificates folder."""
    if context is None:
        raise SettingsError(f'cdk.json has no "{CONTEXT_KEY}" object in its "context": see README "Deploying"')
    if not isinstance(context, Mapping):
        raise SettingsError(f'cdk.json context "{CONTEXT_KEY}" must be an object, not {type(context).__name__}')
    try:
        settings = StackSettings.model_validate(dict(context))
    except ValidationError as exc:
        raise SettingsError(f"invalid dbops settings in cdk.json:\n{_describe(exc)}") from None
    certs_dir = (base_dir / settings.certs_dir).resolve()
    missing = [name for name in settings.ca_bundles() if not (certs_dir / name).is_file()]
    if missing:
        raise SettingsError(
            "invalid dbops settings in cdk.json:\n"
            + "\n".join(
                f"  {CONTEXT_KEY}.databases: ca_bundle {name!r} is not a file in {certs_dir}" for name in missing
            )
        )
    return settings, certs_dir
