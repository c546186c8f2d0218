"""From what the watcher saw to what the report says: statements with their locks on named tables, and the
findings with what to do about each.

A finding is one statement's hold on one table (an index's lock counts as its table's: a query cannot use a
table whose index it cannot lock), with the strongest mode and the longest time, when that lock blocks the
application's writes or reads (SHARE and stronger) on a table that existed before the command — a table the
command created is nobody else's yet. Its severity: `fail` when it was held longer than the limit; `warn` when it
rewrote the table or came within half the limit; `info` otherwise. Rewrites are credited to the statement that
held ACCESS EXCLUSIVE on the table longest; a rewrite no sample saw is a finding of its own.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from dbops.config.durations import format_duration
from dbops.rehearsal import advice
from dbops.rehearsal.models import Finding, LockHold, LockWait, RelationRef, RewrittenTable, StatementResult
from dbops.rehearsal.rewrites import Relation, Relations, name_parts, storage_of, table_of
from dbops.rehearsal.watcher import HoldSeen, Observations, StatementKey, StatementSeen, WaitSeen
from dbops.text import human_bytes

Owners = dict[int, tuple[int, str]]  # a rewrite's storage OID no snapshot names -> (its table's OID, what it is)


def relation_ref(oid: int, before: Relations, after: Relations, owners: Owners | None = None) -> RelationRef:
    """The relation as it was before the command; one it created, as it is after; a rewrite's storage as its
    table; else by OID alone."""
    for relations, existed in ((before, True), (after, False)):
        rel = relations.get(oid)
        if rel is not None:
            return _ref(oid, rel, table_of(rel, relations), existed)
    if owners and oid in owners:
        table_oid, note = owners[oid]
        owner = before.get(table_oid) or after.get(table_oid)
        if owner is not None:
            return _ref(oid, owner, owner, table_oid in before, note)
    for relations in (before, after):  # the table's TOAST storage, as it was; then the new storage of a rewrite
        found = storage_of(oid, relations)
        if found is not None:
            table, note = found
            if relations is after and note == "its TOAST storage":
                note = "its new TOAST storage"
            table = before.get(table.oid, table)
            return _ref(oid, table, table, table.oid in before, note)
    name = f"relation {oid}"
    return RelationRef(oid=oid, name=name, kind="relation", table=name, bytes=None, existed_before=False)


def _ref(oid: int, rel: Relation, table: Relation, existed: bool, storage: str | None = None) -> RelationRef:
    return RelationRef(
        oid=oid,
        name=rel.qualified,
        kind=rel.kind,
        table=table.qualified,
        bytes=table.bytes,
        existed_before=existed,
        storage=storage,
    )


def _named(oid: int, before: Relations, after: Relations) -> bool:
    return oid in before or oid in after or storage_of(oid, before) is not None or storage_of(oid, after) is not None


def storage_owners(obs: Observations, before: Relations, after: Relations, rewrites: list[RewrittenTable]) -> Owners:
    """The table of each locked relation no snapshot names: a rewrite's storage that a later rewrite of the same
    table replaced (a table rewritten twice keeps the second's).

    - storage a committed rewrite gave its table, as a sample of the watcher saw it in pg_class;
    - else, within one transaction (whose catalog changes no other session sees): the one rewritten table on which
      the transaction already held ACCESS EXCLUSIVE when the relation was first seen locked; of several, the ones
      whose final storage is newer (a rewrite's storage OIDs grow: the first's are older than the second's).
      A relation that could be either of several tables keeps its OID."""
    owners: Owners = {}
    unnamed = [h for h in obs.holds if not _named(h.relation, before, after)]
    for hold in unnamed:
        table = obs.storage.get(hold.relation)
        if table is not None and (table in before or table in after):
            owners[hold.relation] = (table, "its new storage (an earlier rewrite's)")
    by_name = {rel.qualified: rel for rel in before.values()}
    rewritten = {by_name[r.table].oid for r in rewrites if r.table in by_name}
    for hold in unnamed:
        if hold.relation in owners:
            continue
        candidates = {
            table_of(before[h.relation], before).oid
            for h in obs.holds
            if (h.pid, h.transaction) == (hold.pid, hold.transaction)
            and h.mode == "AccessExclusiveLock"
            and h.relation in before
            and h.span.first <= hold.span.first
        } & rewritten
        if len(candidates) > 1:
            candidates = {t for t in candidates if t in after and after[t].filenode > hold.relation}
        if len(candidates) == 1:
            owners[hold.relation] = (candidates.pop(), "its new storage (seen while its transaction rewrote it)")
    return owners


def _seconds(at: datetime, origin: datetime | None) -> float:
    return round((at - origin).total_seconds(), 3) if origin else 0.0


def _names_table(query: str, ref: RelationRef) -> bool:
    """The statement's text names the lock's table (or its index): the statement a session was running, or had just
    run, when the lock was first seen, and that names its table, is the one that took it (DDL locks what it names
    when it starts)."""
    names = {name_parts(ref.table)[-1].replace('"', ""), name_parts(ref.name)[-1].replace('"', "")}
    text = advice.normalized(query).replace('"', "")
    return any(re.search(rf"(?<![\w$]){re.escape(name.upper())}(?![\w$])", text) for name in names)


def _hold(hold: HoldSeen, ref: RelationRef, origin: datetime | None, query: str) -> LockHold:
    held, plus_minus = hold.span.estimate()
    taken = hold.taken_by_statement or _names_table(query, ref)
    return LockHold(
        relation=ref,
        mode=hold.mode,
        held_s=round(held, 3),
        uncertainty_s=round(plus_minus, 3),
        first_seen_s=_seconds(hold.span.first, origin),
        taken_by_statement=taken,
        blocks=advice.blocks(hold.mode),
        # a lock on the table's storage goes with one on the table itself, which is what the application meets
        blocking=ref.existed_before and ref.storage is None and advice.blocks_application(hold.mode),
    )


def _wait(wait: WaitSeen, ref: RelationRef) -> LockWait:
    waited, plus_minus = wait.span.estimate()
    return LockWait(
        relation=ref,
        mode=wait.mode,
        waited_s=round(waited, 3),
        uncertainty_s=round(plus_minus, 3),
        blocked_by=sorted(wait.blocked_by),
    )


MAX_STATEMENTS = 500  # kept in the result, longest lock first: a long data migration runs thousands


@dataclass
class Analysis:
    statements: list[StatementResult]
    omitted: int
    findings: list[Finding]
    rewrites: list[RewrittenTable]


Severity = Literal["fail", "warn", "info"]


def _severity(lock_s: float, rewritten: bool, max_lock_s: float) -> Severity:
    if lock_s > max_lock_s:
        return "fail"
    if rewritten or lock_s >= max_lock_s / 2:
        return "warn"
    return "info"


def analyse(
    obs: Observations,
    before: Relations,
    after: Relations,
    rewrites: list[RewrittenTable],
    *,
    max_lock_s: float,
    server_major: int,
    alembic_one_transaction: bool = False,
) -> Analysis:
    origin = obs.started_at
    holds: dict[StatementKey, list[HoldSeen]] = defaultdict(list)
    for hold in obs.holds:
        holds[hold.statement].append(hold)
    waits: dict[StatementKey, list[WaitSeen]] = defaultdict(list)
    for wait in obs.waits:
        waits[wait.statement].append(wait)
    rewritten_tables = {r.table for r in rewrites if r.table_rewritten}
    owners = storage_owners(obs, before, after, rewrites)

    statements: list[tuple[StatementSeen, StatementResult]] = []
    for seen in obs.statements:
        duration, exact = seen.duration()
        locks = [_hold(h, relation_ref(h.relation, before, after, owners), origin, seen.query) for h in holds[seen.key]]
        locks.sort(key=lambda h: (-h.held_s, -advice.strength(h.mode)))
        blocking = [h for h in locks if h.blocking]
        result = StatementResult(
            pid=seen.pid,
            query=advice.one_line(seen.query),
            started_s=_seconds(seen.query_start, origin),
            duration_s=round(max(duration, 0.0), 3),
            duration_exact=exact,
            locks=locks,
            waits=[_wait(w, relation_ref(w.relation, before, after, owners)) for w in waits[seen.key]],
            lock_s=max((h.held_s for h in blocking), default=0.0),
            strongest_mode=max((h.mode for h in locks), key=advice.strength, default=None),
        )
        statements.append((seen, result))
    statements.sort(key=lambda pair: (-pair[1].lock_s, -pair[1].duration_s))

    # rewrites: credited to the statement holding ACCESS EXCLUSIVE on the table longest
    credited: dict[str, tuple[float, StatementSeen, StatementResult]] = {}
    for seen, result in statements:
        for lock in result.locks:
            if lock.mode == "AccessExclusiveLock" and lock.relation.table in rewritten_tables:
                best = credited.get(lock.relation.table)
                if best is None or lock.held_s > best[0]:
                    credited[lock.relation.table] = (lock.held_s, seen, result)
    for rewrite in rewrites:
        if rewrite.table in credited:
            rewrite.statement = credited[rewrite.table][2].query

    findings: list[Finding] = []
    for seen, result in statements:
        findings += _findings_of(
            seen, result, holds[seen.key], credited, max_lock_s, server_major, alembic_one_transaction
        )
    for rewrite in rewrites:
        if rewrite.table_rewritten and rewrite.table not in credited:
            findings.append(
                Finding(
                    severity="warn",
                    statement=None,
                    table=rewrite.table,
                    table_bytes=rewrite.bytes_before,
                    mode="AccessExclusiveLock",
                    rewritten=True,
                    what=f"{rewrite.table} ({human_bytes(rewrite.bytes_before)}) was rewritten by a statement no "
                    "sample saw",
                    advice=advice.advise_unseen_rewrite(rewrite.table, human_bytes(rewrite.bytes_before)),
                )
            )
    order = {"fail": 0, "warn": 1, "info": 2}
    findings.sort(key=lambda f: (order[f.severity], -(f.lock_s or 0.0)))
    kept = [result for _, result in statements]
    return Analysis(kept[:MAX_STATEMENTS], max(0, len(kept) - MAX_STATEMENTS), findings, rewrites)


def _findings_of(
    seen: StatementSeen,
    result: StatementResult,
    seen_holds: list[HoldSeen],
    credited: dict[str, tuple[float, StatementSeen, StatementResult]],
    max_lock_s: float,
    server_major: int,
    alembic_one_transaction: bool,
) -> list[Finding]:
    by_table: dict[str, list[LockHold]] = defaultdict(list)
    for lock in result.locks:
        if lock.blocking:
            by_table[lock.relation.table].append(lock)
    outlived = any(len(h.statements) > 1 for h in seen_holds) or (
        seen.ended_at is not None and any(h.span.last > seen.ended_at for h in seen_holds)
    )
    found = []
    for table, locks in by_table.items():
        strongest = max(locks, key=lambda h: (advice.strength(h.mode), h.held_s))
        lock_s = max(h.held_s for h in locks)
        rewritten = table in credited and credited[table][1] is seen
        size = human_bytes(strongest.relation.bytes)
        situation = advice.Situation(
            statement=advice.normalized(seen.query),
            mode=strongest.mode,
            table=table,
            size=size,
            lock=format_duration(lock_s),
            rewritten=rewritten,
            held_past_statement=outlived,
            server_major=server_major,
            alembic_one_transaction=alembic_one_transaction,
        )
        what = f"{advice.sql_name(strongest.mode)} on {table} ({size}) held {format_duration(lock_s)}"
        what += f" (blocks {strongest.blocks})" + ("; the table was rewritten" if rewritten else "")
        found.append(
            Finding(
                severity=_severity(lock_s, rewritten, max_lock_s),
                statement=result.query,
                taken_by_statement=all(h.taken_by_statement for h in locks),
                table=table,
                table_bytes=strongest.relation.bytes,
                mode=strongest.mode,
                lock_s=lock_s,
                rewritten=rewritten,
                what=what,
                advice=advice.advise(situation),
            )
        )
    if not found and result.duration_s > max_lock_s:  # a long write holds its rows however weak its table lock
        writes = [h for h in result.locks if h.mode == "RowExclusiveLock" and h.relation.existed_before]
        for lock in writes[:1]:
            situation = advice.Situation(
                statement=advice.normalized(seen.query),
                mode=lock.mode,
                table=lock.relation.table,
                size=human_bytes(lock.relation.bytes),
                lock=format_duration(result.duration_s),
                rewritten=False,
                held_past_statement=outlived,
                server_major=server_major,
                alembic_one_transaction=alembic_one_transaction,
            )
            found.append(
                Finding(
                    severity="warn",
                    statement=result.query,
                    table=lock.relation.table,
                    table_bytes=lock.relation.bytes,
                    mode=lock.mode,
                    lock_s=None,
                    what=f"a write on {lock.relation.table} ({human_bytes(lock.relation.bytes)}) ran "
                    f"{format_duration(result.duration_s)}, its rows locked all along",
                    advice=advice.advise(situation),
                )
            )
    for wait in result.waits:
        behind = ", ".join(map(str, wait.blocked_by))
        if wait.waited_s >= max_lock_s / 10:
            found.append(
                Finding(
                    severity="warn" if wait.waited_s >= max_lock_s / 2 else "info",
                    statement=result.query,
                    table=wait.relation.table,
                    table_bytes=wait.relation.bytes,
                    mode=wait.mode,
                    lock_s=None,
                    what=f"waited {format_duration(wait.waited_s)} for {advice.sql_name(wait.mode)} on "
                    f"{wait.relation.table}" + (f" behind pid {behind}" if behind else ""),
                    advice=advice.advise_wait(wait.relation.table, wait.mode, format_duration(wait.waited_s)),
                )
            )
    return found
