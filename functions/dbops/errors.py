"""Domain errors: each says what failed, where, and what to do next — never a secret."""

import re
from collections.abc import Mapping
from typing import Literal

from pydantic import ValidationError


def _path_part(part: str | int) -> str:
    """A field's name as is; a key someone made up (an event is anyone's JSON) quoted when it holds a line break,
    a space or the separators, so every problem stays on one line and reads unambiguously."""
    text = str(part)
    plain = isinstance(part, int) or (text.isprintable() and text != "" and not set(text) & set(" .;:'\""))
    return text if plain else repr(text)


# pydantic's own words before a validator's message, and its "Input" for the value given
_LIBRARY_PREFIX = re.compile(r"^(?:Value error|Assertion failed), ")
_INPUT = re.compile(r"^(?:Input|String|Value|List|Dictionary) should\b")
_PYDANTIC_PHRASES = {"Field required": "is missing", "Extra inputs are not permitted": "is not a setting dbops knows"}


def plain_message(message: str) -> str:
    """A validator's message without pydantic's wording: `Value error, give ...` reads `give ...`, `Input should
    be ...` reads `must be ...`."""
    message = _INPUT.sub("must", _LIBRARY_PREFIX.sub("", message))
    return _PYDANTIC_PHRASES.get(message, message)


def validation_problems(exc: ValidationError, names: Mapping[str, str] | None = None, *, plain: bool = False) -> str:
    """Every wrong field of a pydantic validation, by its path (or the name `names` gives that path, such as the
    command-line flag that set it), without echoing the values given. `plain` (what a person reads on the command
    line): without pydantic's wording, and a problem of the whole model as its message alone; a field's name inside
    a message is replaced by its name in `names` too. Otherwise pydantic's messages as they are, `(root)` for the
    whole model: what the state machines and their tests read."""
    names = names or {}
    problems = []
    for error in exc.errors():
        path = ".".join(_path_part(p) for p in error["loc"]) or ("" if plain else "(root)")
        message = plain_message(error["msg"]) if plain else error["msg"]
        for field, name in names.items():
            if "_" in field:  # only a field name that cannot be an ordinary word
                message = re.sub(rf"\b{re.escape(field)}\b", name, message)
        where = names.get(path) or names.get(path.split(".")[0]) if path else None
        problems.append(f"{where or path}: {message}" if path else message)
    return "; ".join(problems)


class DbopsError(Exception):
    """Base for every error dbops raises on purpose. `could_not_run`: the work never started because something it
    needs was out of reach (the database refused the connection, a client tool is missing or too old): the
    command line exits 3 for it, not 1."""

    def __init__(self, *args: object, could_not_run: bool = False) -> None:
        super().__init__(*args)
        self.could_not_run = could_not_run


class ConfigError(DbopsError):
    """A setting, event or request is invalid."""


class DatabaseError(DbopsError):
    """The database could not be reached or refused a statement."""


class ToolError(DbopsError):
    """A PostgreSQL client tool is missing, too old, or failed."""


class StorageError(DbopsError):
    """S3 refused or failed an operation."""


class BucketNotFound(StorageError):
    """The bucket named does not exist (in the region asked)."""


class BackupError(DbopsError):
    """A backup did not complete; nothing was committed to the catalog."""


class BackupNotFound(DbopsError):
    """No committed backup matches the request."""


class NoReplicatedBackup(DbopsError):
    """A disaster drill found no verified backup of its database in the replica bucket: replication is not working
    (a failure that alarms, not a refused request)."""


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
