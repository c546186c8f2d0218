"""Migration rehearsals: run a migration against a scratch copy of production and measure what it would do.

    result = run_rehearsal(spec, RehearsalRequest(database="sprint_reports_v2", command=["alembic", "upgrade",
                           "head"]), bucket="my-backups")
    print(format_report(result))        # or result.model_dump(mode="json")
    drop_stale(spec)                    # what a daily sweeper runs: scratch databases of rehearsals that died

The scratch copy comes from a backup (the restore drill's path) or a fresh pg_dump; the command runs with the
scratch database's URL while its sessions are sampled (locks and their tables, how long, what waited); tables it
rewrote are found by their storage; its rollback runs and the schema must come back exactly; the copy is dropped;
the verdict says why it fails, if it does, and each finding says what to do.
"""

from dbops.config.durations import format_duration, parse_duration
from dbops.errors import RehearsalRefused
from dbops.rehearsal.models import RehearsalRequest, RehearsalResult
from dbops.rehearsal.report import format_report
from dbops.rehearsal.runner import run_rehearsal
from dbops.rehearsal.scratch import drop_stale

__all__ = [
    "RehearsalRefused",
    "RehearsalRequest",
    "RehearsalResult",
    "drop_stale",
    "format_duration",
    "format_report",
    "parse_duration",
    "run_rehearsal",
]
