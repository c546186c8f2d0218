"""Which backup format a database gets (single pg_dump archive or parallel ranges), and running that backup."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dbops.backup.catalog import BackupManifest
from dbops.backup.parallel.run import run_parallel_backup
from dbops.backup.run import BackupRequest, Progress, run_backup
from dbops.config.backup import AUTO_PARALLEL_RAW_BYTES
from dbops.postgres.connection import ConnectionSpec

Format = Literal["single", "parallel"]


@dataclass(frozen=True)
class FormatChoice:
    format: Format
    workers: int
    reason: str
    streams_why: str = "as given"  # why this many workers (copy_streams)


def choose_format(
    configured: Literal["single", "parallel", "auto"],
    last: BackupManifest | None,
    workers: int,
    threshold: int = AUTO_PARALLEL_RAW_BYTES,
) -> FormatChoice:
    """`auto`: parallel once the last backup wrote `threshold` bytes and more than one COPY stream is available."""
    if configured != "auto":
        return FormatChoice(configured, workers, f"configured: {configured}")
    if workers < 2:
        return FormatChoice("single", 1, "one CPU: a single stream is as fast")
    if last is None:
        return FormatChoice("single", workers, "no committed backup yet")
    if last.raw_bytes < threshold:
        return FormatChoice("single", workers, f"backup {last.id} wrote {last.raw_bytes} bytes, under {threshold}")
    return FormatChoice("parallel", workers, f"backup {last.id} wrote {last.raw_bytes} bytes, over {threshold}")


def run_in_format(
    spec: ConnectionSpec,
    request: BackupRequest,
    choice: FormatChoice,
    *,
    deadline: float | None = None,
    progress: Progress | None = None,
) -> BackupManifest:
    if choice.format == "parallel":
        return run_parallel_backup(spec, request, workers=choice.workers, deadline=deadline, progress=progress)
    return run_backup(spec, request, deadline=deadline, progress=progress)
