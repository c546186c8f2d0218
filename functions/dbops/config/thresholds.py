"""Named warning and critical thresholds, with defaults from check_postgres and PgHero.

Where neither tool sets a default the choice is ours and says so. Durations are seconds (floats, so a test
can use a fraction of one); sizes are bytes; ratios are percentages.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

DAY = 86_400.0


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # connectivity (ours: Lambda and RDS in one VPC see ~1 ms)
    round_trip_warn_ms: float = Field(default=100.0, gt=0)
    round_trip_critical_ms: float = Field(default=500.0, gt=0)
    # check_postgres `backends`: 90 % / 95 % of max_connections
    connections_warn_percent: float = Field(default=90.0, gt=0, le=100)
    connections_critical_percent: float = Field(default=95.0, gt=0, le=100)
    # PgHero long_running_query_sec 60; critical at 5 minutes (check_postgres query_time)
    long_query_warn_seconds: float = Field(default=60.0, gt=0)
    long_query_critical_seconds: float = Field(default=300.0, gt=0)
    # ours: a transaction open this long holds back vacuum everywhere it has touched
    long_transaction_warn_seconds: float = Field(default=300.0, gt=0)
    long_transaction_critical_seconds: float = Field(default=1800.0, gt=0)
    # ours, same scale as queries: an idle transaction holds its locks and blocks vacuum
    idle_in_transaction_warn_seconds: float = Field(default=60.0, gt=0)
    idle_in_transaction_critical_seconds: float = Field(default=300.0, gt=0)
    # check_postgres `locks` wait time: 1 min / 2 min
    lock_wait_warn_seconds: float = Field(default=60.0, ge=0)
    lock_wait_critical_seconds: float = Field(default=120.0, ge=0)
    # PgHero: unused index at least 10 MB
    unused_index_min_bytes: int = Field(default=10 * 1024 * 1024, ge=0)
    # PgHero slow query: at least 100 calls and 20 ms mean; critical (ours) at 1 s mean
    slow_query_min_calls: int = Field(default=100, ge=1)
    slow_query_warn_ms: float = Field(default=20.0, gt=0)
    slow_query_critical_ms: float = Field(default=1000.0, gt=0)
    # ours: dead rows as a share of the table, over a floor so small tables stay quiet
    dead_tuples_warn_percent: float = Field(default=20.0, gt=0, le=100)
    dead_tuples_critical_percent: float = Field(default=50.0, gt=0, le=100)
    dead_tuples_min_rows: int = Field(default=10_000, ge=0)
    # check_postgres last_vacuum / last_analyze: 1 day / 2 days (for tables autovacuum should have visited)
    vacuum_age_warn_seconds: float = Field(default=DAY, gt=0)
    vacuum_age_critical_seconds: float = Field(default=2 * DAY, gt=0)
    analyze_age_warn_seconds: float = Field(default=DAY, gt=0)
    analyze_age_critical_seconds: float = Field(default=2 * DAY, gt=0)
    # check_postgres txn_wraparound: 1.3 B / 1.4 B transactions
    xid_age_warn: int = Field(default=1_300_000_000, gt=0)
    xid_age_critical: int = Field(default=1_400_000_000, gt=0)
    # PgHero: sequence at 90 % of its type's maximum; critical (ours) at 95 %
    sequence_warn_percent: float = Field(default=90.0, gt=0, le=100)
    sequence_critical_percent: float = Field(default=95.0, gt=0, le=100)
    # PgHero cache hit rate 99 %; critical (ours) below 95 %, judged after enough block reads
    cache_hit_warn_percent: float = Field(default=99.0, gt=0, le=100)
    cache_hit_critical_percent: float = Field(default=95.0, gt=0, le=100)
    cache_hit_min_blocks: int = Field(default=10_000, ge=0)
    # ours: WAL segments waiting to be archived, and how long archiving has been stuck
    archive_ready_warn: int = Field(default=10, ge=1)
    archive_ready_critical: int = Field(default=100, ge=1)
    archive_age_warn_seconds: float = Field(default=600.0, gt=0)
    archive_age_critical_seconds: float = Field(default=3600.0, gt=0)
    require_wal_archiving: bool = Field(default=False, description="archive_mode off is critical when true")
    # RDS uploads the WAL every 5 minutes: LatestRestorableTime a few minutes old is normal (ours: warn at 10,
    # critical at 30, when restores as of a moment would lose that much)
    restorable_lag_warn_seconds: float = Field(default=600.0, gt=0)
    restorable_lag_critical_seconds: float = Field(default=1800.0, gt=0)
    # the guide's RPO: 24 h; critical 2 h later (a nightly backup that ran late is a warning first)
    backup_age_warn_hours: float = Field(default=24.0, gt=0)
    backup_age_critical_hours: float = Field(default=26.0, gt=0)
    # WAL a replication slot holds back (check_postgres `replication_slots` takes sizes with no default). Ours: warn
    # at 1 GiB, PostgreSQL's default max_wal_size (past it the slot, not the checkpoints, keeps the WAL), critical
    # at 10 GiB (the WAL volume's space is going to a consumer that is not reading it). An inactive slot is a
    # warning whatever it holds, a slot whose WAL is lost (wal_status `lost`, 13+) is critical.
    slot_retained_wal_warn_bytes: int = Field(default=2**30, ge=0)
    slot_retained_wal_critical_bytes: int = Field(default=10 * 2**30, ge=0)
    # xmin horizon age in transactions (ours: neither tool has one). A running query holds a snapshot a few
    # thousand transactions old; 10 M is hours of writes vacuum could not clean; 100 M is half of
    # autovacuum_freeze_max_age's default (200 M): freezing soon stops at the horizon
    xmin_horizon_warn: int = Field(default=10_000_000, gt=0)
    xmin_horizon_critical: int = Field(default=100_000_000, gt=0)
    # check_postgres `prepared_txns`: 1 s (any prepared transaction is probably a mistake) / 30 s
    prepared_transaction_warn_seconds: float = Field(default=1.0, ge=0)
    prepared_transaction_critical_seconds: float = Field(default=30.0, ge=0)
    # data_checksums off is a note, not a problem (ours: they are chosen at initdb and changed only offline with
    # pg_checksums, which a managed server such as RDS does not offer); a warning when this is true. A checksum
    # failure is always critical.
    require_data_checksums: bool = Field(default=False, description="data_checksums off is a warning when true")
    # temporary files written by this database per hour, between two runs (ours: with the default work_mem a
    # spill of a few MB now and then is normal; 1 GiB an hour means queries spill routinely, 20 GiB an hour
    # competes with the data for the volume's space and I/O)
    temp_files_warn_bytes_per_hour: float = Field(default=float(2**30), gt=0)
    temp_files_critical_bytes_per_hour: float = Field(default=20.0 * 2**30, gt=0)
    # check_ssl_cert (Nagios plugin) defaults: warn with 20 days left, critical with 15 (lower is worse)
    tls_certificate_warn_days: float = Field(default=20.0)
    tls_certificate_critical_days: float = Field(default=15.0)
    # ours: one application holding this share of max_connections leaves the others, the backup and the
    # operator little room (the connections probe judges the total)
    application_connections_warn_percent: float = Field(default=75.0, gt=0, le=100)
    # RDS (CloudWatch AWS/RDS): free storage as a share of the allocated storage, lower is worse; ours: 20 % leaves
    # days to grow the volume (a modification can run once every 6 hours), 10 % is close to RDS's own
    # storage-full state. CPU: ours, the common 80 % / 95 % of the 5-minute maximum.
    rds_free_storage_warn_percent: float = Field(default=20.0, gt=0, le=100)
    rds_free_storage_critical_percent: float = Field(default=10.0, gt=0, le=100)
    rds_cpu_warn_percent: float = Field(default=80.0, gt=0, le=100)
    rds_cpu_critical_percent: float = Field(default=95.0, gt=0, le=100)
    # ours: RDS ships PostgreSQL minors about quarterly; two behind is half a year of security and corruption
    # fixes missing, six is a minor RDS is about to retire and upgrade by itself
    rds_minor_versions_behind_warn: int = Field(default=2, ge=1)
    rds_minor_versions_behind_critical: int = Field(default=6, ge=1)

    @model_validator(mode="after")
    def _warn_before_critical(self) -> Thresholds:
        wrong = []
        for name in type(self).model_fields:
            if not name.endswith("_critical") and "_critical_" not in name:
                continue
            warn_name = name.replace("critical", "warn")
            warn, critical = getattr(self, warn_name), getattr(self, name)
            lower_is_worse = name.startswith(("cache_hit", "tls_certificate", "rds_free_storage"))
            if (warn < critical) if lower_is_worse else (warn > critical):
                wrong.append(f"{warn_name} ({warn}) is {'below' if lower_is_worse else 'above'} {name} ({critical})")
        if wrong:
            raise ValueError("warning must come before critical: " + "; ".join(wrong))
        return self
