"""The stack's settings: the "dbops" object in cdk.json's context, parsed once into pydantic models.

A mistake is reported with the setting's path and what is wrong with it, before any construct is made. The parts:
databases (infra/database_settings.py), schedules, retention, alarms and rehearsals (infra/*_settings.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from infra.alarm_settings import AlarmSettings, AlarmThresholds
from infra.constants import CONTEXT_KEY
from infra.database_settings import DatabaseSettings, VpcPlacement
from infra.rehearsal_settings import rehearsal_secret_name
from infra.replication_settings import DisasterDatabase, ReplicationSettings
from infra.restore_settings import RestoreSettings
from infra.retention_settings import BackupLockSettings, RetentionDays
from infra.schedule_settings import BackupSchedule, Schedules, rate_hours
from infra.settings_model import SettingsModel

Architecture = Literal["arm64", "x86_64"]


class SettingsError(ValueError):
    """The cdk.json settings are invalid; the message names every wrong setting."""


class FunctionSizing(SettingsModel):
    memory_mb: int | None = Field(default=None, ge=128, le=10240, description="absent: dbops' own sizing")


class FunctionsSettings(SettingsModel):
    """Per function, not per database: one function serves every database (a database too large for the backup
    function's memory or 15 minutes backs up on Fargate: databases[].backup.runner)."""

    backup: FunctionSizing = FunctionSizing()
    health: FunctionSizing = FunctionSizing()
    maintenance: FunctionSizing = FunctionSizing()
    restore: FunctionSizing = FunctionSizing()  # every restore step, and the daily drop of expired copies


class BackupSettings(SettingsModel):
    """The backup state machine (infra/backup_workflow.py): how many databases are backed up at once."""

    max_concurrency: int = Field(
        default=4,
        ge=1,
        le=40,
        description="the Map's MaxConcurrency: databases backed up at the same time, each in its own Backup "
        "invoke (an inline Map runs at most 40 at once)",
    )


class StackSettings(SettingsModel):
    stack_name: str = Field(default="dbops", pattern=r"^[A-Za-z][A-Za-z0-9-]{0,127}$")
    architecture: Architecture = "arm64"
    databases: list[DatabaseSettings] = Field(min_length=1)
    certs_dir: str = Field(default="certs", description="folder of CA bundles, relative to cdk.json")
    schedules: Schedules = Schedules()
    retention_days: RetentionDays = RetentionDays()
    backup_lock: BackupLockSettings | None = Field(
        default=None, description="S3 Object Lock on the backups (infra/storage.py); absent: none"
    )
    alarms: AlarmSettings = AlarmSettings()
    replication: ReplicationSettings | None = Field(
        default=None, description="a second copy of the backups in another region (infra/replication.py); absent: none"
    )
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
        if self.replication is not None and self.replication.problems(self.stack_name):
            raise ValueError("; ".join(self.replication.problems(self.stack_name)))
        unknown = sorted({db.name for db in self.disaster_databases()} - set(names))
        if unknown:
            raise ValueError(
                f"replication.restore.databases: {', '.join(unknown)} is not in databases[]: a DR database restores "
                "the replicated backups of a configured database, by its name"
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
        found = {db.ca_bundle for db in self.databases} | {db.ca_bundle for db in self.disaster_databases()}
        return sorted(b for b in found if b and b != "system")

    def disaster_databases(self) -> list[DisasterDatabase]:
        """replication.restore.databases: the DR region's databases (none without restores there)."""
        restore = self.replication.restore if self.replication else None
        return list(restore.databases) if restore else []

    def disaster_settings(self) -> StackSettings | None:
        """The DR stack's settings (replication.restore): its databases on the DR servers, its own alarm topic
        (CloudWatch publishes to a topic in its own region), no schedule but the disaster drill, every restore
        in Lambda (the Fargate task's image lives in the main region); None without restores in the DR region."""
        restore = self.replication.restore if self.replication else None
        if restore is None:
            return None
        sources = {db.name: db for db in self.databases}
        schedules = Schedules.model_validate(
            {**{name: "off" for name in Schedules.model_fields}, "restore_drill": restore.drill_schedule or "off"}
        )
        return self.model_copy(
            update={
                "databases": [db.settings(sources[db.name]) for db in restore.databases],
                "schedules": schedules,
                "alarms": AlarmSettings(email=self.alarms.email, thresholds=self.alarms.thresholds),
                "restore_task_image": None,
            }
        )

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
