"""The contract between the functions and the CDK app: every name both sides must spell the same way.

Environment variable names the functions read, maintenance task names, backup kinds, and the CloudWatch
metrics (namespace, dimensions, names) the handlers emit and the alarms and dashboard watch. Plain constants
only, importable without psycopg, boto3 or CDK: `dbops.*` and `handlers.*` import it, and so does `infra/`.
tests/infra/test_contract.py feeds each synthesized function's environment into that function's settings
classes; tests/unit/test_contract.py checks each name here is read by a settings class.
"""

from __future__ import annotations

from typing import Literal

# ---- environment variables (prefix DBOPS_; pydantic-settings reads them by field name) ---------------------
ENV_PREFIX = "DBOPS_"
ENV_BUCKET = "DBOPS_BUCKET"
ENV_DATABASES = "DBOPS_DATABASES"  # JSON list of dbops.config.databases.DatabaseConfig
ENV_PG_BIN = "DBOPS_PG_BIN"
ENV_COMPRESSION_LEVEL = "DBOPS_COMPRESSION_LEVEL"
ENV_DEADLINE_MARGIN_S = "DBOPS_DEADLINE_MARGIN_S"
ENV_TOPIC_ARN = "DBOPS_TOPIC_ARN"
ENV_WORK_DIR = "DBOPS_WORK_DIR"
ENV_RESTORE_JOBS = "DBOPS_RESTORE_JOBS"
ENV_PRE_RESTORE_KEEP_DAYS = "DBOPS_PRE_RESTORE_KEEP_DAYS"
ENV_FARGATE_THRESHOLD_BYTES = "DBOPS_FARGATE_THRESHOLD_BYTES"
ENV_RETENTION_KEEP = "DBOPS_RETENTION_KEEP"
# grandfather-father-son: the first verified nightly backup of each ISO week / month is kept this many days (unset: no
# such class), and S3 Object Lock on the backups written (JSON: dbops.config.backup.BackupLock; unset: none)
ENV_RETENTION_WEEKLY_DAYS = "DBOPS_RETENTION_WEEKLY_DAYS"
ENV_RETENTION_MONTHLY_DAYS = "DBOPS_RETENTION_MONTHLY_DAYS"
ENV_BACKUP_LOCK = "DBOPS_BACKUP_LOCK"
ENV_POINT_IN_TIME_WAIT_MINUTES = "DBOPS_POINT_IN_TIME_WAIT_MINUTES"
# a selective restore's swap into the live database (dbops.restore.selective_swap.locks): seconds each attempt may
# wait for all its locks together, seconds all attempts may take, and the longest it may hold the application's writes
ENV_RESTORE_LOCK_TIMEOUT_S = "DBOPS_RESTORE_LOCK_TIMEOUT_S"
ENV_RESTORE_LOCK_WAIT_BUDGET_S = "DBOPS_RESTORE_LOCK_WAIT_BUDGET_S"
ENV_RESTORE_MAX_PAUSE_S = "DBOPS_RESTORE_MAX_PAUSE_S"
# backups: when one runs on Fargate instead of Lambda (dbops.backup.placement)
ENV_BACKUP_LAMBDA_SHARE = "DBOPS_BACKUP_LAMBDA_SHARE"
ENV_BACKUP_FARGATE_RAW_BYTES = "DBOPS_BACKUP_FARGATE_RAW_BYTES"
ENV_MAX_STREAMS = "DBOPS_MAX_STREAMS"  # a parallel backup's COPY streams at most
ENV_LAMBDA_MEMORY_SIZE = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"  # set by Lambda itself: its vCPUs grow with it
# the Fargate task definition's CPU units (1024 a vCPU), set by infra: a backup in the task sizes its streams by them
ENV_TASK_CPU_UNITS = "DBOPS_TASK_CPU_UNITS"
# maintenance: one MaintenanceConfig (JSON) for any database not named in DBOPS_MAINTENANCE_BY_DATABASE,
# and {database name: MaintenanceConfig} (JSON): each database's own rules, timeouts and thresholds
ENV_MAINTENANCE = "DBOPS_MAINTENANCE"
ENV_MAINTENANCE_BY_DATABASE = "DBOPS_MAINTENANCE_BY_DATABASE"
# health: Thresholds (JSON) for every database, and {database name: Thresholds} (JSON) overriding them per database
HEALTH_ENV_PREFIX = "DBOPS_HEALTH_"
ENV_HEALTH_THRESHOLDS = "DBOPS_HEALTH_THRESHOLDS"
ENV_HEALTH_THRESHOLDS_BY_DATABASE = "DBOPS_HEALTH_THRESHOLDS_BY_DATABASE"
ENV_HEALTH_STATEMENT_TIMEOUT_MS = "DBOPS_HEALTH_STATEMENT_TIMEOUT_MS"
ENV_HEALTH_LOCK_TIMEOUT_MS = "DBOPS_HEALTH_LOCK_TIMEOUT_MS"
ENV_HEALTH_TOP = "DBOPS_HEALTH_TOP"
ENV_HEALTH_EXACT_SIZES_MAX_TABLES = "DBOPS_HEALTH_EXACT_SIZES_MAX_TABLES"
# the Fargate restore task: the execution state, and the work (stage or dump_point_in_time), passed by the
# state machine
ENV_RESTORE_STATE = "DBOPS_RESTORE_STATE"
ENV_RESTORE_STEP = "DBOPS_RESTORE_STEP"
# the Fargate backup task: which database and kind of backup, passed by the backup state machine
ENV_BACKUP_DATABASE = "DBOPS_BACKUP_DATABASE"
ENV_BACKUP_KIND = "DBOPS_BACKUP_KIND"
# Powertools
ENV_POWERTOOLS_SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"
ENV_POWERTOOLS_METRICS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"

# ---- maintenance tasks (the maintenance function's {"task": ...}; one schedule each) -----------------------
MaintenanceTask = Literal["analyze", "vacuum", "reindex", "cleanup", "archive"]
MAINTENANCE_TASKS: tuple[MaintenanceTask, ...] = ("analyze", "vacuum", "reindex", "cleanup", "archive")

# ---- backup kinds (prefix backups/<kind>/: the bucket's lifecycle rules are per kind) ---------------------
# pointintime: a dump of a temporary instance restored to a moment (dbops.aws.rds)
BackupKind = Literal["nightly", "predeploy", "prerestore", "manual", "pointintime"]
BACKUP_KINDS: tuple[BackupKind, ...] = ("nightly", "predeploy", "prerestore", "manual", "pointintime")
# kinds whose backups expire only once enough newer ones verified (dbops.backup.retention)
RETAINED_KINDS: tuple[BackupKind, ...] = ("nightly", "predeploy")
# kinds a backup request names (the backup state machine's input, its Fargate task, `dbops backups start`); a
# prerestore backup is taken by the restore itself
REQUESTED_KINDS: tuple[BackupKind, ...] = ("nightly", "predeploy", "manual")
# ---- the bucket's layout: infra grants access and sets lifecycle rules by these prefixes ---------------------
BACKUPS_PREFIX = "backups/"  # backups/<kind>/<database>/<id>/: archives, manifest (last), verification record
RESTORES_PREFIX = "restores/"  # restores/<database>/<id>.json: each restore's outcome (dbops.restore.records)
DRILLS_PREFIX = "drills/"  # drills/<database>/<id>.json: each drill's outcome
# restore-progress/<execution name>.json: a running restore's Stage progress, for `dbops restore` to show
RESTORE_PROGRESS_PREFIX = "restore-progress/"
# retention/<kind>/<database>.json: what the last retention pass saw or wrote on each backup object's tags, so the
# next one reads only what may have changed (dbops.backup.retention_ledger); outside backups/, which the catalog lists
RETENTION_LEDGER_PREFIX = "retention/"
HEALTH_PREFIX = "health/"  # the health function's counters between runs (dbops.health.counters)
REHEARSALS_PREFIX = "rehearsals/"  # rehearsals/<database>/<id>/: a deployed rehearsal's records and report
# a backup's verification record, backups/<kind>/<database>/<id>/verification.json: restores write it too
VERIFICATION_RECORD = "verification.json"

# ---- tags --------------------------------------------------------------------------------------------------
# the tag the lifecycle rules of RETAINED_KINDS test: they expire only objects tagged "true" (dbops.backup.retention)
EXPIRABLE_TAG = "dbops-expirable"
# a nightly backup's retention class (grandfather-father-son): the lifecycle rules expire each class at its own age
CLASS_TAG = "dbops-class"
BackupClass = Literal["nightly", "weekly", "monthly"]
BACKUP_CLASSES: tuple[BackupClass, ...] = ("nightly", "weekly", "monthly")
CLASSED_KIND: BackupKind = "nightly"  # the one kind with classes
# a point-in-time restore's temporary RDS copy: named and tagged so that the stack's roles may touch only those
PIT_INSTANCE_PREFIX = "dbops-pit-"
PIT_PURPOSE_TAG = "dbops:purpose"
PIT_PURPOSE = "point-in-time-restore"
PIT_RESTORE_TAG = "dbops:restore-id"
PIT_EXECUTION_TAG = "dbops:execution"

# ---- ECS: the container of a rehearsal task that runs the application's migration ---------------------------
MIGRATION_CONTAINER = "migration"

# ---- errors the restore state machine retries a step after (class names in dbops.errors: a step raises them
# when the server or S3 went away for a moment; every other error is final) -----------------------------------
RETRIED_STEP_ERRORS: tuple[str, ...] = ("DatabaseError", "StorageError")

# ---- metrics (EMF; handlers.observability.emit) ------------------------------------------------------------
SERVICE_NAME = "dbops"
METRICS_NAMESPACE = "dbops"
DIMENSION_DATABASE = "database"
DIMENSION_TASK = "task"

# backup function
BACKUP_SUCCEEDED = "BackupSucceeded"
BACKUP_FAILED = "BackupFailed"
BACKUP_BYTES = "BackupBytes"
BACKUP_DURATION_SECONDS = "BackupDurationSeconds"
# restore steps
RESTORE_SUCCEEDED = "RestoreSucceeded"
RESTORE_FAILED = "RestoreFailed"
RESTORE_SECONDS = "RestoreSeconds"
# a request refused by validation (unknown table or database, a moment outside the window, no such backup, a bad
# option): nothing was touched and the execution succeeded with status "refused". Counted, never alarmed: an
# operator's typo pages nobody (tests/infra/test_monitoring.py keeps it out of every alarm)
RESTORE_REFUSED = "RestoreRefused"
DRILL_SUCCEEDED = "DrillSucceeded"
DRILL_FAILED = "DrillFailed"
DRILL_SECONDS = "DrillSeconds"
# the DR stack's disaster drill (a drill with `disaster`): its restore's seconds, the age of the replicated backup it
# restored when it started (the DR recovery point), and its failures (none replicated counts)
DISASTER_RESTORE_SECONDS = "DisasterRestoreSeconds"
DISASTER_RECOVERY_POINT_AGE_SECONDS = "DisasterRecoveryPointAgeSeconds"
DISASTER_DRILL_FAILED = "DisasterDrillFailed"
PRE_RESTORE_COPIES_DROPPED = "PreRestoreCopiesDropped"
# maintenance function (dimensions database and task)
MAINTENANCE_FAILED = "MaintenanceFailed"
ROWS_DELETED = "RowsDeleted"
ROWS_ARCHIVED = "RowsArchived"
DURATION_SECONDS = "DurationSeconds"
# health function: the report's own two, then one per probe value, named from the value's key
# (dbops.health.model.metric_name: connections_used_percent -> ConnectionsUsedPercent)
HEALTH_STATUS = "HealthStatus"
HEALTH_PROBE_ERRORS = "HealthProbeErrors"
BACKUP_AGE_HOURS = "BackupAgeHours"  # probe value backup_age_hours
CONNECTIONS_USED_PERCENT = "ConnectionsUsedPercent"  # probe value connections_used_percent
BLOCKED_QUERIES = "BlockedQueries"  # probe value blocked_queries
XID_WRAPAROUND_AGE = "XidWraparoundAge"  # probe value xid_wraparound_age
RESTORABLE_LAG_SECONDS = "RestorableLagSeconds"  # probe value restorable_lag_seconds (RDS point in time)
# the probe value keys the alarms and dashboard rely on, by metric name
HEALTH_VALUE_METRICS: dict[str, str] = {
    "backup_age_hours": BACKUP_AGE_HOURS,
    "connections_used_percent": CONNECTIONS_USED_PERCENT,
    "blocked_queries": BLOCKED_QUERIES,
    "xid_wraparound_age": XID_WRAPAROUND_AGE,
    "restorable_lag_seconds": RESTORABLE_LAG_SECONDS,
}
# rehearsals (the restore state machine's mode rehearse): the verdict, the longest blocking lock, the whole time
REHEARSAL_PASSED = "RehearsalPassed"
REHEARSAL_FAILED = "RehearsalFailed"
REHEARSAL_LONGEST_LOCK_SECONDS = "RehearsalLongestLockSeconds"
REHEARSAL_SECONDS = "RehearsalSeconds"
REHEARSAL_REFUSED = "RehearsalRefused"  # refused before anything was made (not alarmed, as RESTORE_REFUSED)
# metrics no alarm may watch: each counts requests refused by validation, which are no fault of the system
UNALARMED_METRICS: tuple[str, ...] = (RESTORE_REFUSED, REHEARSAL_REFUSED)
# the output of an execution that ended refused (its terminal Succeed state): {"status": "refused", "reason": ...}
REFUSED_STATUS = "refused"
# the watcher container beside a rehearsal's migration: the secret's URL (ECS puts it there) and its orders (JSON)
ENV_REHEARSAL_URL = "DBOPS_REHEARSAL_URL"
ENV_REHEARSAL_WATCH = "DBOPS_REHEARSAL_WATCH"
# the file the watcher makes in its temporary folder once watching: the task definition's health check tests it
REHEARSAL_READY_FILE = "dbops-watching"

# ---- exit codes: the dbops command line and the backup's Fargate task (whose exit code the state machine reports) --
EXIT_DONE = 0
EXIT_FAILURE = 1  # the work ran and failed
EXIT_USAGE = 2  # refused: bad input, nothing done
EXIT_COULD_NOT_RUN = 3  # something the work needs was out of reach (a server, a tool, storage)
EXIT_MEANINGS = {
    EXIT_DONE: "done",
    EXIT_FAILURE: "failed",
    EXIT_USAGE: "refused: bad input",
    EXIT_COULD_NOT_RUN: "could not run",
}
