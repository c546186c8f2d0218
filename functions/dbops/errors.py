"""Domain errors: each says what failed, where, and what to do next — never a secret."""

from typing import Literal

from pydantic import ValidationError


def _path_part(part: str | int) -> str:
    """A field's name as is; a key someone made up (an event is anyone's JSON) quoted when it holds a line break,
    a space or the separators, so every problem stays on one line and reads unambiguously."""
    text = str(part)
    plain = isinstance(part, int) or (text.isprintable() and text != "" and not set(text) & set(" .;:'\""))
    return text if plain else repr(text)


def validation_problems(exc: ValidationError) -> str:
    """Every wrong field of a pydantic validation, by its path, without echoing the values given."""
    return "; ".join(f"{'.'.join(_path_part(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors())


class DbopsError(Exception):
    """Base for every error dbops raises on purpose."""


class ConfigError(DbopsError):
    """A setting, event or request is invalid."""


class DatabaseError(DbopsError):
    """The database could not be reached or refused a statement."""


class ToolError(DbopsError):
    """A PostgreSQL client tool is missing, too old, or failed."""


class StorageError(DbopsError):
    """S3 refused or failed an operation."""


class BackupError(DbopsError):
    """A backup did not complete; nothing was committed to the catalog."""


class BackupNotFound(DbopsError):
    """No committed backup matches the request."""


class VerificationFailed(DbopsError):
    """A backup object does not match its manifest or cannot be read whole."""


class BackupsFailed(Exception):
    """Raised after every database asked for was tried, so Lambda's Errors metric, the state machine's Catch and
    async retries see it."""


class PointInTimeError(DbopsError):
    """The temporary copy could not be restored, reached, or deleted."""


class RehearsalRefused(DbopsError):
    """The rehearsal cannot start as asked; nothing was created."""


class RuleRefused(Exception):
    """One problem with one rule."""


class LockUnavailable(Exception):
    """The object was skipped because another session holds a lock on it (VACUUM SKIP_LOCKED)."""


class GiveUp(Exception):
    """Stop retrying this object: record it with `status` and the message."""

    def __init__(self, status: Literal["skipped", "failed"], message: str) -> None:
        super().__init__(message)
        self.status = status


class RestoreRefused(DbopsError):
    """The request cannot be carried out; nothing was touched."""


class CheckFailed(DbopsError):
    """The staged copy does not match the backup's manifest."""


class RestoreBusy(DbopsError):
    """Refused for now: the selective swap could not take its locks within its budget (restore.lock_wait_budget)
    because other sessions held them; nothing changed. Try again once the sessions named have ended."""


class PauseTooLong(DbopsError):
    """Refused: the selective swap would hold the application's writes on the restored tables longer than
    restore.max_pause (estimated from the staged rows before any lock was taken); nothing changed."""


class RestoreError(DbopsError):
    """Restoring rows failed: loading one object of a parallel backup, named by its table and range."""


class RefusedBeforeStart(DbopsError):
    """`dbops restore` refuses the request itself before starting any execution (dbops.cli.restore_checks): the
    message says why, on one line."""
