"""How each maintenance statement runs: in one autocommit session with its own lock and statement timeouts,
a lock timeout retried a few times and then recorded as skipped, any other error recorded as failed."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import psycopg
from psycopg import errors as pgerrors

from dbops.config.maintenance import MaintenanceConfig
from dbops.errors import DbopsError, GiveUp, LockUnavailable
from dbops.maintenance.models import Progress, ProgressEvent
from dbops.postgres.connection import ConnectionSpec, connect, describe_error

T = TypeVar("T")

SET_TIMEOUTS = (
    "SELECT set_config('lock_timeout', %(lock)s, %(local)s), set_config('statement_timeout', %(statement)s, %(local)s),"
    " set_config('idle_in_transaction_session_timeout', %(idle)s, %(local)s)"
)


# a lock timeout or a deadlock (we were chosen as the victim) is worth another try after a pause
RETRYABLE = (pgerrors.LockNotAvailable, pgerrors.DeadlockDetected, LockUnavailable)


def ms(seconds: float) -> str:
    return str(max(1, round(seconds * 1000)))


@dataclass
class Deadline:
    at: float | None = None

    def passed(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at

    def cap(self, seconds: float) -> float:
        """A statement timeout that ends by the deadline (at least 1 s), so Lambda never kills us mid-statement."""
        if self.at is None:
            return seconds
        return max(1.0, min(seconds, self.at - time.monotonic()))


class Session:
    """One autocommit session for a whole run; reopened when the server dropped it."""

    def __init__(self, spec: ConnectionSpec, config: MaintenanceConfig, deadline: Deadline | None = None) -> None:
        self.spec = spec
        self.config = config
        self.deadline = deadline or Deadline()
        self._stack = ExitStack()
        self._conn: psycopg.Connection[Any] | None = None
        self._notices: list[tuple[str | None, str | None]] = []

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    @property
    def conn(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.broken or self._conn.closed:
            if self._conn is not None:
                self._conn.close()
            self._conn = self._stack.enter_context(
                connect(self.spec, statement_timeout_ms=int(self.config.batch_statement_timeout_s * 1000))
            )
            self._conn.add_notice_handler(self._on_notice)
        return self._conn

    def set_timeouts(self, lock_s: float, statement_s: float, *, local: bool = False) -> None:
        """Session-wide (autocommit statements) or for the current transaction only (local)."""
        statement_s = self.deadline.cap(statement_s)
        self.conn.execute(
            SET_TIMEOUTS,
            {"lock": ms(lock_s), "statement": ms(statement_s), "idle": ms(statement_s), "local": local},
        )

    def _on_notice(self, diagnostic: psycopg.errors.Diagnostic) -> None:
        # read now: the diagnostic is only valid inside the callback
        self._notices.append((diagnostic.sqlstate, diagnostic.message_primary))

    def take_notices(self) -> list[tuple[str | None, str | None]]:
        """(sqlstate, message) of the notices and warnings received since the last call."""
        notices = list(self._notices)
        self._notices.clear()
        return notices


@dataclass
class Attempted(Generic[T]):
    status: Literal["done", "skipped", "failed"]
    attempts: int
    value: T | None = None
    detail: str | None = None


def attempt(
    fn: Callable[[], T],
    *,
    what: str,
    config: MaintenanceConfig,
    progress: Progress,
    deadline: Deadline,
    lock_timeout_s: float | None = None,
) -> Attempted[T]:
    """Run fn; retry it after a lock timeout up to config.lock_retries times, then give up as skipped."""
    tries = 0
    while True:
        tries += 1
        try:
            return Attempted("done", tries, fn())
        except RETRYABLE as exc:
            reason = lock_reason(exc, lock_timeout_s or config.lock_timeout_s)
            if tries > config.lock_retries or deadline.passed():
                return Attempted("skipped", tries, detail=f"{reason}; gave up after {tries} attempt(s)")
            progress(
                ProgressEvent(event="retry", object=what, message=f"{reason}; retry {tries}/{config.lock_retries}")
            )
            time.sleep(config.retry_delay_s)
        except GiveUp as exc:
            return Attempted(exc.status, tries, detail=str(exc))
        except psycopg.Error as exc:
            return Attempted("failed", tries, detail=describe_error(exc))
        except DbopsError as exc:
            return Attempted("failed", tries, detail=str(exc))


def lock_reason(exc: BaseException, lock_timeout_s: float) -> str:
    if isinstance(exc, pgerrors.DeadlockDetected):
        return "deadlock with another session"
    if isinstance(exc, LockUnavailable):
        return str(exc)
    return f"lock not available within lock_timeout {lock_timeout_s:g}s (another session holds it)"
