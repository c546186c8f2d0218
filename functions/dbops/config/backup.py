"""Backup defaults that infra and the functions share: what retention keeps, and when a backup moves to Fargate."""

from __future__ import annotations

# a nightly or predeploy backup may expire only once this many newer backups of it verified (dbops.backup.retention)
DEFAULT_KEEP = 3
# a backup that took more than this share of the Lambda timeout runs on Fargate next time: databases grow, and a
# backup that stops at the deadline commits nothing (dbops.backup.placement)
DEFAULT_MAX_SHARE = 0.6
# pg_dump's output beyond which a backup runs on Fargate whatever its last duration said (a fast night is no
# promise): 32 GiB in 60% of 15 minutes is ~60 MB/s, a rate well below what bench/README.md measures locally;
# lower it (DBOPS_BACKUP_FARGATE_RAW_BYTES) when the function streams to S3 slower than that
DEFAULT_MAX_RAW_BYTES = 32 * 1024**3
# a parallel backup's COPY streams at most (also bounded by the machine's CPUs: dbops.backup.parallel.plan)
DEFAULT_MAX_STREAMS = 4
# `backup.format: auto` backs up in the parallel format once the last backup wrote this much before compression
# and there is more than one CPU to copy with (dbops.backup.formats)
AUTO_PARALLEL_RAW_BYTES = 1024**3
