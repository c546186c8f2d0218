"""What to do about a finding: keyed on the statement's text, the lock it held, and whether it rewrote the table.

The rules say what PostgreSQL actually did and the usual way to do the same change without holding the
application up; the first rule that matches a statement wins, from the most specific to the general
"set lock_timeout" advice. Statement texts are matched with comments removed, case folded and whitespace
collapsed; string literals are blanked first so a word inside a literal never matches.
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dbops.postgres.sql_text import normalized as normalized
from dbops.postgres.sql_text import one_line as one_line

# pg_locks' names, weakest first
MODES = (
    "AccessShareLock",
    "RowShareLock",
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
)
SQL_NAMES = {mode: re.sub(r"(?<=[a-z])(?=[A-Z])", " ", mode.removesuffix("Lock")).upper() for mode in MODES}


def strength(mode: str) -> int:
    return MODES.index(mode) if mode in MODES else -1


def sql_name(mode: str) -> str:
    """AccessExclusiveLock → ACCESS EXCLUSIVE, as the documentation and LOCK TABLE write it."""
    return SQL_NAMES.get(mode, mode)


def blocks(mode: str) -> str:
    """What a lock of `mode` on a table keeps the application from doing."""
    level = strength(mode)
    if level >= strength("AccessExclusiveLock"):
        return "reads and writes"
    if level >= strength("ShareLock"):  # SHARE, SHARE ROW EXCLUSIVE, EXCLUSIVE: conflict with ROW EXCLUSIVE
        return "writes"
    if level == strength("ShareUpdateExclusiveLock"):
        return "other DDL and VACUUM only"
    return "only DDL"


def blocks_application(mode: str) -> bool:
    """The lock conflicts with INSERT/UPDATE/DELETE (ROW EXCLUSIVE) or more: the application waits behind it."""
    return strength(mode) >= strength("ShareLock")


@dataclass(frozen=True)
class Situation:
    """What is known about one statement's hold on one table."""

    statement: str  # normalized()
    mode: str
    table: str
    size: str  # the table's size for people, e.g. "412.0 MB"
    lock: str  # the lock time for people, e.g. "40.20s"
    rewritten: bool
    held_past_statement: bool  # the lock outlived the statement: its transaction went on
    server_major: int
    alembic_one_transaction: bool = False  # an Alembic upgrade whose env.py keeps every revision in one transaction


Rule = tuple[Callable[[Situation], bool], Callable[[Situation], str]]

TRANSACTION = (
    " The lock was held until the transaction ended, after the statement: keep such a statement in a transaction "
    "of its own, or commit right after it."
)
ALEMBIC_TRANSACTION = (
    " Alembic ran this whole upgrade in one transaction (env.py does not set "
    "context.configure(transaction_per_migration=True)): set it, or keep such a revision alone."
)
LOCK_TIMEOUT = (
    "Set a lock_timeout first (SET lock_timeout = '2s', and retry on failure): while it waits for its lock, every "
    "query on the table queues behind it."
)


def _has(*words: str) -> Callable[[Situation], bool]:
    return lambda s: all(re.search(rf"\b{w}\b", s.statement) for w in words)


def _type_change(s: Situation) -> bool:
    return _has("ALTER TABLE")(s) and bool(re.search(r"\bALTER (COLUMN )?\S+ (SET DATA )?TYPE\b", s.statement))


def _add_column(s: Situation) -> bool:
    return _has("ALTER TABLE", "ADD")(s) and bool(re.search(r"\bADD (COLUMN )?(IF NOT EXISTS )?\S+ \S", s.statement))


def _add_constraint(kind: str) -> Callable[[Situation], bool]:
    return lambda s: _has("ALTER TABLE", "ADD")(s) and _has(kind)(s) and not _has("NOT VALID")(s)


def _index_build(s: Situation) -> bool:
    return bool(re.search(r"\bCREATE (UNIQUE )?INDEX\b", s.statement)) and not _has("CONCURRENTLY")(s)


def _set_not_null(s: Situation) -> str:
    then = (
        "skips the scan because the valid CHECK proves it (PostgreSQL 12+)"
        if s.server_major >= 12
        else "skips the scan from PostgreSQL 12 on (this server is older: upgrade it first)"
    )
    return (
        f"SET NOT NULL scanned all of {s.table} ({s.size}) under ACCESS EXCLUSIVE for {s.lock}. Instead: add a CHECK "
        "(column IS NOT NULL) constraint NOT VALID (instant) and VALIDATE it in its own transaction, then SET NOT "
        f"NULL, which {then}, and drop the CHECK. VALIDATE takes only SHARE UPDATE EXCLUSIVE: reads and writes go on."
    )


def _vacuum_full(s: Situation) -> bool:
    return bool(re.search(r"\bVACUUM\b.*\bFULL\b", s.statement))


def _reindex(s: Situation) -> bool:
    return _has("REINDEX")(s) and not _has("CONCURRENTLY")(s)


RULES: list[Rule] = [
    (
        lambda s: _type_change(s) and s.rewritten,
        lambda s: (
            f"Changing the column's type rewrote {s.table} ({s.size}) and rebuilt its indexes under ACCESS EXCLUSIVE "
            f"(no reads, no writes) for {s.lock}. Only binary-coercible changes skip the rewrite (varchar(n) to text "
            "or to a longer varchar, numeric(p,s) to a larger p with the same s, a wider timestamp precision). "
            "Otherwise add a new column of the new type, keep it filled for new rows (a trigger), backfill the "
            "existing rows in batches, then switch to it in one short transaction and drop the old column."
        ),
    ),
    (
        lambda s: _add_column(s) and s.rewritten,
        lambda s: (
            f"Adding the column rewrote {s.table} ({s.size}) under ACCESS EXCLUSIVE for {s.lock}: its default is "
            "volatile (clock_timestamp(), random(), gen_random_uuid(), nextval()) or it is GENERATED ... STORED or an "
            "identity. Add the column without a default (a constant or otherwise non-volatile default is fine: "
            "PostgreSQL 11+ stores it in the catalog without a rewrite), set the default for new rows, then backfill "
            "the existing rows in batches of a few thousand, each its own transaction."
        ),
    ),
    (_has("SET NOT NULL"), lambda s: _set_not_null(s)),
    (
        lambda s: _add_constraint("FOREIGN KEY")(s) or _add_constraint("REFERENCES")(s),
        lambda s: (
            f"Adding the foreign key checked every row of {s.table} ({s.size}) under {sql_name(s.mode)} for {s.lock} "
            "(SHARE ROW EXCLUSIVE on both tables: writes blocked). Add it NOT VALID (instant: only new rows are "
            "checked), then ALTER TABLE ... VALIDATE CONSTRAINT in its own transaction, which checks the old rows "
            "under SHARE UPDATE EXCLUSIVE while reads and writes go on."
        ),
    ),
    (
        _add_constraint("CHECK"),
        lambda s: (
            f"Adding the CHECK constraint scanned {s.table} ({s.size}) under ACCESS EXCLUSIVE for {s.lock}. Add it "
            "NOT VALID (instant), then VALIDATE CONSTRAINT in its own transaction (SHARE UPDATE EXCLUSIVE: reads and "
            "writes go on)."
        ),
    ),
    (
        lambda s: (_add_constraint("PRIMARY KEY")(s) or _add_constraint("UNIQUE")(s)) and not _has("USING INDEX")(s),
        lambda s: (
            f"Adding the constraint built its index on {s.table} ({s.size}) under ACCESS EXCLUSIVE for {s.lock}. "
            "Build the unique index first with CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT ... "
            "PRIMARY KEY/UNIQUE USING INDEX, which only takes a brief lock."
        ),
    ),
    (
        _index_build,
        lambda s: (
            f"CREATE INDEX held SHARE on {s.table} ({s.size}) for {s.lock}: reads went on, every write waited. Create "
            "it CONCURRENTLY (SHARE UPDATE EXCLUSIVE: writes go on); it cannot run in a transaction block, so in "
            "Alembic: with op.get_context().autocommit_block(): op.create_index(..., postgresql_concurrently=True). "
            "A failed concurrent build leaves an INVALID index to drop and build again."
        ),
    ),
    (
        _reindex,
        lambda s: f"REINDEX locked {s.table} ({s.size}) for {s.lock}. Use REINDEX ... CONCURRENTLY (PostgreSQL 12+).",
    ),
    (
        _has("DROP INDEX"),
        lambda s: (
            f"DROP INDEX took ACCESS EXCLUSIVE on {s.table} for {s.lock}, and waited for every query using the table. "
            "Use DROP INDEX CONCURRENTLY (outside a transaction block)."
        ),
    ),
    (
        lambda s: _vacuum_full(s) or _has("CLUSTER")(s),
        lambda s: (
            f"{'VACUUM FULL' if _vacuum_full(s) else 'CLUSTER'} rewrote {s.table} ({s.size}) under "
            f"ACCESS EXCLUSIVE for {s.lock}. Use pg_repack (or pg_squeeze), which rebuilds it while reads and writes "
            "go on, taking ACCESS EXCLUSIVE only for a moment at the end."
        ),
    ),
    (
        _has("TRUNCATE"),
        lambda s: f"TRUNCATE took ACCESS EXCLUSIVE on {s.table} for {s.lock}. Delete in batches if it is in use.",
    ),
    (
        _has("LOCK TABLE"),
        lambda s: (
            f"LOCK TABLE took {sql_name(s.mode)} on {s.table} and held it {s.lock}, until its transaction ended. Lock "
            "only what must not change, as late as possible, and end the transaction as soon as the work is done."
        ),
    ),
    (
        lambda s: bool(re.match(r"^(WITH .*)?(UPDATE|DELETE|INSERT)\b", s.statement)),
        lambda s: (
            f"The statement changed rows of {s.table} ({s.size}) for {s.lock} in one transaction; every row it touched "
            "stays locked until the transaction ends. Backfill or delete in batches of a few thousand rows, each its "
            "own transaction."
        ),
    ),
    (
        lambda s: _type_change(s) and not s.rewritten,
        lambda s: (
            f"The type change did not rewrite {s.table} (binary-coercible) but held ACCESS EXCLUSIVE for {s.lock}."
        ),
    ),
    (
        lambda s: _add_column(s) and not s.rewritten,
        lambda s: (
            f"Adding the column did not rewrite {s.table}, but held ACCESS EXCLUSIVE for {s.lock}. " + LOCK_TIMEOUT
        ),
    ),
]


def advise(situation: Situation) -> str:
    """What to do, for a statement's lock on a table."""
    for matches, say in RULES:
        if matches(situation):
            text = say(situation)
            break
    else:
        text = (
            f"{sql_name(situation.mode)} on {situation.table} ({situation.size}) was held {situation.lock}: "
            f"it blocks the application's {blocks(situation.mode)}. {LOCK_TIMEOUT}"
        )
    if situation.held_past_statement and "until its transaction ended" not in text:
        text += TRANSACTION + (ALEMBIC_TRANSACTION if situation.alembic_one_transaction else "")
    return text


def alembic_one_transaction(command: list[str], cwd: Path) -> bool:
    """Whether `command` is an Alembic upgrade that runs every revision in one transaction: its env.py (found
    through alembic.ini's script_location, `-c`/`--config` or ./alembic.ini) does not set
    transaction_per_migration=True. A downgrade, another tool, or an env.py that cannot be read: False (no advice
    is better than advice that may not apply)."""
    words = [Path(w).name for w in command]
    if "alembic" not in words or "upgrade" not in words:
        return False
    ini = cwd / "alembic.ini"
    for flag in ("-c", "--config"):
        if flag in command[:-1]:
            ini = cwd / command[command.index(flag) + 1]
    parser = configparser.ConfigParser(defaults={"here": str(ini.parent.resolve())})
    try:
        parser.read_string(ini.read_text())
        env_py = Path(parser.get("alembic", "script_location"))
        text = (env_py if env_py.is_absolute() else cwd / env_py).joinpath("env.py").read_text()
    except (OSError, configparser.Error, UnicodeDecodeError):
        return False
    return not re.search(r"transaction_per_migration\s*=\s*True", text)


def advise_wait(table: str, mode: str, waited: str) -> str:
    return (
        f"The statement waited {waited} for {sql_name(mode)} on {table}. In production the application's queries on "
        f"{table} that conflict with it would queue behind it all that time: set a lock_timeout first (SET "
        "lock_timeout = '2s') and retry on failure."
    )


def advise_unseen_rewrite(table: str, size: str) -> str:
    return (
        f"{table} ({size}) was rewritten (it has new storage: a new relfilenode) by a statement shorter than the "
        "sampling interval, so its lock time is below it. A rewrite takes ACCESS EXCLUSIVE for as long as it takes "
        "to copy the table: on a bigger table it will hold reads and writes up."
    )
