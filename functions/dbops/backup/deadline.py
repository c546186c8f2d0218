"""When a backup must have stopped (the Lambda timeout less a margin): waits bounded by it, pg_dump killed at it."""

from __future__ import annotations

import math
import subprocess
import threading
import time
from dataclasses import dataclass

from dbops.errors import BackupError


@dataclass
class Deadline:
    """When the backup must have stopped (the Lambda timeout less a margin), or None: no limit."""

    at: float | None

    def expired(self) -> bool:
        return self.at is not None and time.monotonic() > self.at

    def bound(self, seconds: int) -> int:
        """A wait of at most `seconds` that also ends once the deadline has passed (within a second of it),
        so a wait cut short by it is reported as the time limit."""
        if self.at is None:
            return seconds
        return max(1, min(seconds, math.ceil(self.at - time.monotonic()) + 1))

    def watch(self, proc: subprocess.Popen[bytes]) -> threading.Timer | None:
        """Kill the process when the time is up, even while it is stalled (waiting for a lock, say)."""
        if self.at is None:
            return None
        timer = threading.Timer(max(0.0, self.at - time.monotonic()), proc.kill)
        timer.daemon = True
        timer.start()
        return timer

    def error(self, database: str, cause: str | None = None) -> BackupError:
        during = f" (at that moment: {cause})" if cause else ""
        return BackupError(
            f"backup of {database} stopped: the time limit is near (Lambda timeout){during}. "
            "Give the function more time or run the backup as the Fargate task."
        )

    def check(self, database: str) -> None:
        if self.expired():
            raise self.error(database)
