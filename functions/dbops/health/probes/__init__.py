"""The database probes, in report order. Each takes the shared ProbeContext and returns a Finding; the
runner names and times it, and turns any failure into an `error` result so the others still run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dbops.health.context import ProbeContext
from dbops.health.model import Finding
from dbops.health.probes.activity import probe_idle_in_transaction, probe_long_running_queries, probe_long_transactions
from dbops.health.probes.applications import probe_connections_by_application
from dbops.health.probes.archiving import probe_wal_archiving
from dbops.health.probes.cache import probe_cache_hit
from dbops.health.probes.checksums import probe_checksums
from dbops.health.probes.connections import probe_connections
from dbops.health.probes.connectivity import probe_connectivity
from dbops.health.probes.constraints import probe_not_valid_constraints, probe_unindexed_foreign_keys
from dbops.health.probes.horizon import probe_prepared_transactions, probe_xmin_horizon
from dbops.health.probes.indexes import probe_duplicate_indexes, probe_invalid_indexes, probe_unused_indexes
from dbops.health.probes.locks import probe_blocked_queries
from dbops.health.probes.sequences import probe_sequences
from dbops.health.probes.sizes import probe_sizes
from dbops.health.probes.slots import probe_replication_slots
from dbops.health.probes.statements import probe_slow_queries
from dbops.health.probes.temp_files import TEMP_FILES, probe_temp_files
from dbops.health.probes.tls import probe_tls_certificate
from dbops.health.probes.vacuum import probe_dead_tuples, probe_vacuum_age
from dbops.health.probes.wraparound import probe_wraparound


@dataclass(frozen=True)
class Probe:
    name: str
    run: Callable[[ProbeContext], Finding]


DATABASE_PROBES: tuple[Probe, ...] = (
    Probe("connectivity", probe_connectivity),
    Probe("connections", probe_connections),
    Probe("long_running_queries", probe_long_running_queries),
    Probe("long_transactions", probe_long_transactions),
    Probe("idle_in_transaction", probe_idle_in_transaction),
    Probe("blocked_queries", probe_blocked_queries),
    Probe("sizes", probe_sizes),
    Probe("unused_indexes", probe_unused_indexes),
    Probe("invalid_indexes", probe_invalid_indexes),
    Probe("duplicate_indexes", probe_duplicate_indexes),
    Probe("slow_queries", probe_slow_queries),
    Probe("dead_tuples", probe_dead_tuples),
    Probe("vacuum_age", probe_vacuum_age),
    Probe("wraparound", probe_wraparound),
    Probe("sequences", probe_sequences),
    Probe("cache_hit", probe_cache_hit),
    Probe("wal_archiving", probe_wal_archiving),
    Probe("replication_slots", probe_replication_slots),
    Probe("xmin_horizon", probe_xmin_horizon),
    Probe("prepared_transactions", probe_prepared_transactions),
    Probe("checksums", probe_checksums),
    Probe(TEMP_FILES, probe_temp_files),
    Probe("not_valid_constraints", probe_not_valid_constraints),
    Probe("unindexed_foreign_keys", probe_unindexed_foreign_keys),
    Probe("tls_certificate", probe_tls_certificate),
    Probe("connections_by_application", probe_connections_by_application),
)

BACKUP_FRESHNESS = "backup_freshness"
PROBE_NAMES: tuple[str, ...] = (*(p.name for p in DATABASE_PROBES), BACKUP_FRESHNESS)
