"""How a health run is configured: thresholds, timeouts, and where the backup catalog is.

`HealthSettings` is what `run_health` takes; the health function reads its environment into
`dbops.settings.HealthEnvironment`, which makes one per database.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from dbops.config.thresholds import Thresholds


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
