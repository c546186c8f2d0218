"""A running restore's Stage progress published in the bucket for `dbops restore` to show:
restore-progress/<execution name>.json, {"step", "what", "bytes", "total", "finished", "updated_at"}.

Written by a background thread at most every PUBLISH_EVERY_S (the readers' threads never wait on S3), and once more
when the step ends. A failed write is reported to `warn` and ignored: progress never fails a restore."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from dbops.aws import s3stream
from dbops.contract import RESTORE_PROGRESS_PREFIX
from dbops.errors import DbopsError

PUBLISH_EVERY_S = 2.0


def progress_key(execution: str) -> str:
    """The progress object of an execution (its ARN or its name)."""
    return f"{RESTORE_PROGRESS_PREFIX}{execution.rsplit(':', 1)[-1]}.json"


def read_progress(bucket: str, execution: str) -> dict[str, Any] | None:
    """The execution's published progress, or None when there is none (yet) or it cannot be read now."""
    try:
        text = s3stream.get_text(bucket, progress_key(execution))
        found = json.loads(text) if text else None
    except (DbopsError, ValueError):
        return None
    return found if isinstance(found, dict) else None


class ProgressFile:
    """A `progress(what, bytes)` callback that publishes the figures; use it as a context manager around the work."""

    def __init__(
        self,
        bucket: str,
        execution: str,
        total: int,
        *,
        step: str = "stage",
        warn: Callable[[str], None] | None = None,
        every_s: float = PUBLISH_EVERY_S,
    ) -> None:
        self.bucket, self.key, self.total, self.step = bucket, progress_key(execution), total, step
        self.warn = warn or (lambda _message: None)
        self.every_s = every_s
        self.what, self.done = "restore", 0
        self.writes = 0
        self._written: tuple[str, int] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="restore-progress", daemon=True)

    def __call__(self, what: str, done: int) -> None:
        self.what, self.done = what, done  # read by the publishing thread: two plain assignments, no lock needed

    def __enter__(self) -> ProgressFile:
        self._publish(finished=False)  # at once: the total is known before the first byte
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self._publish(finished=kind is None)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            if self._written != (self.what, self.done):
                self._publish(finished=False)

    def _publish(self, finished: bool) -> None:
        what, done = self.what, self.done
        body = {
            "step": self.step,
            "what": what,
            "bytes": done,
            "total": self.total,
            "finished": finished,
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        try:
            s3stream.put_json(self.bucket, self.key, json.dumps(body))
        except (DbopsError, BotoCoreError, ClientError, OSError) as exc:
            self.warn(f"restore progress not published: {' '.join(str(exc).split())}")
            return
        self._written = (what, done)
        self.writes += 1


def tee(*callbacks: Callable[[str, int], None] | None) -> Callable[[str, int], None]:
    """One `progress` callback calling each given one."""
    given = [c for c in callbacks if c is not None]

    def report(what: str, done: int) -> None:
        for callback in given:
            callback(what, done)

    return report
