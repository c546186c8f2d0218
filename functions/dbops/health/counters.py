"""The counters one health run keeps for the next: the temp-file counters of each database, so the temp_files
probe can report a rate rather than a total since statistics were last reset.

`run_health(..., temp_file_state=S3TempFileState(bucket))` reads the previous counters before the probes and
keeps the new ones after them; without a state the probe reports the totals and no rate. In S3 each database has
its own small JSON object, `health/temp-files/<database>.json` ({database, temp_files, temp_bytes, stats_reset,
taken_at}), so two runs on different databases never overwrite each other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict

from dbops.contract import HEALTH_PREFIX


class TempFileCounters(BaseModel):
    """pg_stat_database's temp_files and temp_bytes for one database, with when they were read and reset."""

    model_config = ConfigDict(frozen=True)

    temp_files: int
    temp_bytes: int
    stats_reset: datetime | None
    taken_at: datetime


class TempFileState(Protocol):
    """Where the counters of the previous run are kept, by database."""

    def load(self, database: str) -> TempFileCounters | None: ...

    def save(self, database: str, counters: TempFileCounters) -> None: ...


@dataclass
class TempFileBaseline:
    """What the temp_files probe is handed when a state is kept: the previous run's counters (None: first run),
    or why they could not be read; the probe leaves the counters it read in `current`, for the runner to keep."""

    previous: TempFileCounters | None
    error: str | None = None
    current: TempFileCounters | None = None


class S3TempFileState:
    """The counters as one JSON object per database under `health/` in the bucket."""

    def __init__(self, bucket: str, prefix: str = HEALTH_PREFIX) -> None:
        self.bucket = bucket
        self.prefix = prefix

    def key(self, database: str) -> str:
        return f"{self.prefix}temp-files/{quote(database, safe='')}.json"

    def load(self, database: str) -> TempFileCounters | None:
        from dbops.aws.s3stream import get_text  # botocore, only when a state is used

        text = get_text(self.bucket, self.key(database))
        return None if text is None else TempFileCounters.model_validate_json(text)

    def save(self, database: str, counters: TempFileCounters) -> None:
        from dbops.aws.s3stream import put_json

        body = {"database": database, **counters.model_dump(mode="json")}
        put_json(self.bucket, self.key(database), json.dumps(body))

    def __repr__(self) -> str:
        return f"S3TempFileState(s3://{self.bucket}/{self.prefix})"
