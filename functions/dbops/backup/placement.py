"""Where a database's backup runs: in the Backup Lambda function, or as the ECS Fargate task (same code, no limit).

The rule, for one database: its configured runner wins (`lambda` or `fargate`); with `auto` (the default) the
backup runs on Fargate when its last committed backup shows it will not finish inside Lambda's limit with margin:
it took more than `max_share` of the function's timeout, or pg_dump wrote more than `max_raw_bytes`. A database
with no committed backup yet runs in Lambda (a backup that does not fit stops cleanly before the timeout and says
so; configure `fargate` for it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from dbops.backup.catalog import BackupManifest
from dbops.config.backup import DEFAULT_MAX_RAW_BYTES, DEFAULT_MAX_SHARE

if TYPE_CHECKING:
    from dbops.settings import FunctionSettings

Runner = Literal["lambda", "fargate"]
ConfiguredRunner = Literal["auto", "lambda", "fargate"]
RUNNERS: tuple[str, ...] = ("lambda", "fargate")


@dataclass(frozen=True)
class RunnerChoice:
    runner: Runner
    reason: str


def choose_runner(
    configured: ConfiguredRunner,
    last: BackupManifest | None,
    *,
    lambda_timeout_s: float,
    max_share: float = DEFAULT_MAX_SHARE,
    max_raw_bytes: int = DEFAULT_MAX_RAW_BYTES,
) -> RunnerChoice:
    """Where the next backup of a database runs, and why (for the log and the execution's history)."""
    if configured != "auto":
        return RunnerChoice(configured, f"configured: {configured}")
    if last is None:
        return RunnerChoice("lambda", "no committed backup yet")
    limit_s = lambda_timeout_s * max_share
    if last.duration_seconds > limit_s:
        return RunnerChoice(
            "fargate",
            f"backup {last.id} took {last.duration_seconds:.0f} s, over {max_share:.0%} of the "
            f"{lambda_timeout_s:.0f} s Lambda timeout ({limit_s:.0f} s)",
        )
    raw = last.raw_bytes
    if raw > max_raw_bytes:
        return RunnerChoice(
            "fargate", f"backup {last.id} wrote {raw} bytes before compression, over {max_raw_bytes} bytes"
        )
    return RunnerChoice(
        "lambda",
        f"backup {last.id} took {last.duration_seconds:.0f} s of {limit_s:.0f} s and wrote {raw} bytes "
        f"of {max_raw_bytes}",
    )


def runner_for(settings: FunctionSettings, database: str, lambda_timeout_s: float) -> RunnerChoice:
    """Where `database`'s next backup (or a point-in-time copy's dump) runs: its configured runner, else its last
    committed backup in the bucket against this Lambda timeout."""
    from dbops.backup import catalog

    config = settings.database(database)
    last = None
    if config.backup_runner == "auto":
        last = last_backup([e.manifest for e in catalog.list_backups(settings.bucket, database=database)])
    return choose_runner(
        config.backup_runner,
        last,
        lambda_timeout_s=lambda_timeout_s,
        max_share=settings.backup_lambda_share,
        max_raw_bytes=settings.backup_fargate_raw_bytes,
    )


def last_backup(manifests: list[BackupManifest]) -> BackupManifest | None:
    """The newest of a database's committed backups (any kind: each is a whole pg_dump of it)."""
    return max(manifests, key=lambda m: m.finished_at, default=None)
