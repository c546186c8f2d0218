"""How a health run is configured: thresholds, timeouts, and where the backup catalog is.

`HealthSettings` is what `run_health` takes; `HealthEnvironment` reads the Lambda's DBOPS_HEALTH_*
variables once at the edge (thresholds as JSON: DBOPS_HEALTH_THRESHOLDS='{"connections_warn_percent": 80}' for
every database, DBOPS_HEALTH_THRESHOLDS_BY_DATABASE='{"billing": {"connections_warn_percent": 70}}' per database,
over those).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from dbops.contract import HEALTH_ENV_PREFIX
from dbops.health.thresholds import Thresholds


class ProbeOptions(BaseModel):
    """How the probes run: the same whether given in code or read from the environment."""

    thresholds: Thresholds = Field(default_factory=Thresholds)
    statement_timeout_ms: int = Field(default=5_000, ge=1, description="applies to every probe query")
    lock_timeout_ms: int = Field(default=1_000, ge=0, description="a probe never queues long behind a lock")
    top: int = Field(default=10, ge=1, le=100, description="rows listed per probe (largest tables, slowest queries)")
    exact_sizes_max_tables: int = Field(
        default=5_000, ge=0, description="measure every table up to this many; past it, estimate and measure the top"
    )


class HealthSettings(ProbeOptions):
    model_config = ConfigDict(extra="forbid", frozen=True)

    bucket: str | None = Field(default=None, description="backup bucket; without one, backup freshness is unknown")
    database_name: str | None = Field(default=None, description="the database's name in the catalog and reports")
    rds_instance_id: str | None = Field(default=None, description="its RDS instance: point-in-time readiness")
    rds_cluster_id: str | None = Field(default=None, description="its Aurora cluster: point-in-time readiness")

    def rds_source(self) -> tuple[Literal["instance", "cluster"], str] | None:
        if self.rds_cluster_id:
            return "cluster", self.rds_cluster_id
        return ("instance", self.rds_instance_id) if self.rds_instance_id else None


class HealthEnvironment(BaseSettings, ProbeOptions):
    """The health function's own settings (env vars prefixed DBOPS_HEALTH_)."""

    model_config = SettingsConfigDict(env_prefix=HEALTH_ENV_PREFIX, extra="ignore")

    thresholds_by_database: dict[str, Thresholds] = Field(
        default_factory=dict, description="database name -> the thresholds it sets (over `thresholds`)"
    )

    def thresholds_for(self, name: str) -> Thresholds:
        """`thresholds`, with the ones set for this database in their place."""
        own = self.thresholds_by_database.get(name)
        if own is None:
            return self.thresholds
        return Thresholds.model_validate(
            {**self.thresholds.model_dump(exclude_unset=True), **own.model_dump(exclude_unset=True)}
        )

    def for_database(
        self, name: str, bucket: str | None, rds: tuple[Literal["instance", "cluster"], str] | None = None
    ) -> HealthSettings:
        options = {field: getattr(self, field) for field in ProbeOptions.model_fields}
        options["thresholds"] = self.thresholds_for(name)
        kind, identifier = rds or ("instance", None)
        return HealthSettings(**options, bucket=bucket, database_name=name, **{f"rds_{kind}_id": identifier})
