"""Retention: 30 days, and never fewer than the newest N verified backups.

Real backups of a real database into the moto bucket, nightly over simulated days; the bucket's own lifecycle
rules (the stack's, read back from the bucket) applied to the objects' simulated ages, as S3 would.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from psycopg import sql

from dbops import aws
from dbops.backup import catalog, stored
from dbops.backup.catalog import BackupManifest
from dbops.backup.retention import release_for_expiry
from dbops.backup.run import BackupRequest, run_backup
from dbops.backup.verify import verify_backup
from dbops.contract import EXPIRABLE_TAG
from dbops.errors import ConfigError, VerificationFailed
from dbops.postgres.connection import ConnectionSpec, connect
from dbops.postgres.pgrestore import run_pg_restore
from infra.retention_settings import RetentionDays
from local_stack.postgres import LocalPostgres
from tests.integration.lifecycle_helpers import (
    SimulatedLifecycle,
    configure_like_the_stack,
    five_good_nights_then_35_failing,
    whole,
)
from tests.integration.test_health_backups import DATABASE as FAKED
from tests.integration.test_health_backups import write_backup

DATABASE = "app"
KEEP = 3  # the default of retention_days.keep_newest_verified and DBOPS_RETENTION_KEEP


@pytest.fixture
def admin(pg18: LocalPostgres) -> ConnectionSpec:
    return ConnectionSpec.from_url(pg18.url())


@pytest.fixture
def app_db(admin: ConnectionSpec) -> Iterator[ConnectionSpec]:
    """A small database: one table, a row added each night before the backup."""
    name = f"r_{uuid.uuid4().hex[:10]}"
    with connect(admin) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    spec = admin.for_database(name)
    with connect(spec) as conn:
        conn.execute("CREATE TABLE nights (day int PRIMARY KEY, note text NOT NULL)")
    yield spec
    with connect(admin) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _lifecycle(bucket: str, retention: RetentionDays) -> SimulatedLifecycle:
    configure_like_the_stack(bucket, retention)
    return SimulatedLifecycle(bucket)


def _backup(spec: ConnectionSpec, bucket: str, day: int) -> BackupManifest:
    with connect(spec) as conn:
        conn.execute("INSERT INTO nights VALUES (%s, %s)", [day, f"written on day {day}"])
    return run_backup(spec, BackupRequest(database=DATABASE, bucket=bucket))


def _keys(bucket: str, prefix: str) -> set[str]:
    return {o["Key"] for o in aws.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])}


def _listed(bucket: str) -> list[str]:
    return [e.manifest.id for e in catalog.list_backups(bucket, kind="nightly", database=DATABASE)]


def _restore_into_new_database(admin: ConnectionSpec, bucket: str, manifest: BackupManifest) -> list[int]:
    """pg_restore of the stored archive (read back and checked against its manifest) into a new database."""
    name = f"restored_{uuid.uuid4().hex[:8]}"
    with connect(admin) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        target = admin.for_database(name)
        run_pg_restore(target, ["--exit-on-error"], stdin=b"".join(stored.read_back(bucket, manifest.dump)))
        with connect(target) as conn:
            return [int(r[0]) for r in conn.execute("SELECT day FROM nights ORDER BY day").fetchall()]
    finally:
        with connect(admin) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_forty_nights_the_last_35_failing_keep_the_newest_verified_backups_whole_and_restorable(
    app_db: ConnectionSpec, admin: ConnectionSpec, pg18: LocalPostgres, bucket: str
) -> None:
    lifecycle = _lifecycle(bucket, RetentionDays())  # nightly: 30 days
    wrong_password = ConnectionSpec.from_url(pg18.url(app_db.dbname, password="not-the-password"))
    backups, expired_on = five_good_nights_then_35_failing(
        lifecycle,
        DATABASE,
        lambda day: _backup(app_db, bucket, day),
        lambda: run_backup(wrong_password, BackupRequest(database=DATABASE, bucket=bucket)),
        KEEP,
    )

    # the failures committed nothing; backups 1 and 2 each had 3 newer verified ones and went at 30 days, whole
    assert {day: keys for day, keys in expired_on.items() if keys} == {32: whole(backups[1]), 33: whole(backups[2])}
    assert _keys(bucket, "backups/") == whole(backups[3]) | whole(backups[4]) | whole(backups[5])
    # the newest 3 verified backups, 35 to 37 days old, are all there, listed, and verify again
    assert _listed(bucket) == [backups[5].id, backups[4].id, backups[3].id]
    for day in (3, 4, 5):
        assert verify_backup(bucket, backups[day].id).ok
    # and the newest restores, with every night's row up to its own
    assert _restore_into_new_database(admin, bucket, backups[5]) == [1, 2, 3, 4, 5]


def test_forty_good_nights_expire_every_backup_older_than_30_days(app_db: ConnectionSpec, bucket: str) -> None:
    """The positive control: when backups succeed, retention is the lifecycle's 30 days."""
    lifecycle = _lifecycle(bucket, RetentionDays())
    backups: dict[int, BackupManifest] = {}
    expired_on: dict[int, set[str]] = {}
    for day in range(1, 41):
        expired_on[day] = set(lifecycle.expire(day))
        backups[day] = _backup(app_db, bucket, day)
        verify_backup(bucket, backups[day].id)
        release_for_expiry(bucket, "nightly", DATABASE, KEEP)
        lifecycle.observe(day)

    # written on day d, gone at the start of day d + 31: days 1 to 9 by day 40, each whole
    assert {day: keys for day, keys in expired_on.items() if keys} == {d + 31: whole(backups[d]) for d in range(1, 10)}
    assert _listed(bucket) == [backups[d].id for d in range(40, 9, -1)]


def test_unverified_backups_do_not_count_and_go_once_enough_newer_ones_verified(
    app_db: ConnectionSpec, bucket: str
) -> None:
    """Nightly age 5 days. Nights 1-4 verify, night 5's archive is damaged and fails verification, 6-9 are never
    verified, 10-12 verify again, then backups stop."""
    lifecycle = _lifecycle(bucket, RetentionDays(nightly=5))
    backups: dict[int, BackupManifest] = {}
    expired_on: dict[int, list[int]] = {}
    for day in range(1, 17):
        gone = set(lifecycle.expire(day))
        expired_on[day] = [d for d, m in backups.items() if m.dump.key in gone]
        if day <= 12:
            backups[day] = _backup(app_db, bucket, day)
            if day == 5:
                aws.client("s3").put_object(Bucket=bucket, Key=backups[day].dump.key, Body=b"damaged")
                with pytest.raises(VerificationFailed):
                    verify_backup(bucket, backups[day].id)
            elif not 6 <= day <= 9:
                verify_backup(bucket, backups[day].id)
            release_for_expiry(bucket, "nightly", DATABASE, KEEP)
        lifecycle.observe(day)

    # backup d may go at the start of day d + 6 once it is tagged: 1 when 2-4 had verified; 2 and 3 once 10
    # and 11 had; 4-9 (the failed and the unverified too) only once 10-12 had, tagged on day 12
    assert {day: ds for day, ds in expired_on.items() if ds} == {
        7: [1],
        11: [2],
        12: [3],
        13: [4, 5, 6, 7],
        14: [8],
        15: [9],
    }
    assert _listed(bucket) == [backups[12].id, backups[11].id, backups[10].id]


def _tag(bucket: str, key: str) -> str | None:
    tag_set = aws.client("s3").get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
    return {t["Key"]: t["Value"] for t in tag_set}.get(EXPIRABLE_TAG)


def test_tags_every_object_of_a_backup_and_untags_when_newer_verified_ones_disappear(bucket: str) -> None:
    written = [write_backup(bucket, hours_ago=24 * n, verified=n != 1) for n in range(6)]  # newest first
    aws.client("s3").put_object_tagging(
        Bucket=bucket, Key=written[5].dump.key, Tagging={"TagSet": [{"Key": "owner", "Value": "ops"}]}
    )

    first = release_for_expiry(bucket, "nightly", FAKED, KEEP)

    # newest first: 0 (verified), 1 (failed verification), 2, 3 verified: 4 and 5 have 3 newer verified ones
    assert first.protected == [m.id for m in written[:4]]
    assert first.expirable == [m.id for m in written[4:]]
    for manifest in written:
        expected = "true" if manifest in written[4:] else "false"
        keys = {manifest.dump.key, manifest.prefix + catalog.MANIFEST} | (
            {manifest.prefix + catalog.VERIFICATION} if manifest != written[1] else set()
        )
        assert {key: _tag(bucket, key) for key in keys} == dict.fromkeys(keys, expected)
    tag_set = aws.client("s3").get_object_tagging(Bucket=bucket, Key=written[5].dump.key)["TagSet"]
    assert {"Key": "owner", "Value": "ops"} in tag_set  # someone else's tag is kept

    again = release_for_expiry(bucket, "nightly", FAKED, KEEP)
    assert again.retagged == [] and again.expirable == first.expirable  # idempotent

    # the newest backup's archive is gone (deleted by hand, say): backup 4 is among the newest 3 verified again
    aws.client("s3").delete_object(Bucket=bucket, Key=written[0].dump.key)
    after = release_for_expiry(bucket, "nightly", FAKED, KEEP)
    assert after.retagged == [written[4].id]
    assert _tag(bucket, written[4].dump.key) == "false"
    assert _tag(bucket, written[5].dump.key) == "true"


def test_leftovers_of_failed_backups_are_released_once_a_day_old(bucket: str) -> None:
    committed = write_backup(bucket, hours_ago=1, verified=True)
    leftover = catalog.backup_prefix("nightly", FAKED, catalog.new_backup_id()) + "database.dump.zst"
    aws.client("s3").put_object(Bucket=bucket, Key=leftover, Body=b"a dump whose backup never committed")

    soon = release_for_expiry(bucket, "nightly", FAKED, KEEP)
    assert soon.leftovers == [] and _tag(bucket, leftover) is None  # perhaps a backup still being written

    later = release_for_expiry(bucket, "nightly", FAKED, KEEP, now=datetime.now(UTC) + timedelta(days=1, minutes=1))
    assert later.leftovers == [leftover] and _tag(bucket, leftover) == "true"
    assert later.protected == [committed.id] and _tag(bucket, committed.dump.key) == "false"


@pytest.mark.parametrize("kind", ["prerestore", "manual"])
def test_prerestore_and_manual_backups_are_left_to_their_age(bucket: str, kind: str) -> None:
    prefix = catalog.backup_prefix(kind, FAKED, catalog.new_backup_id())
    aws.client("s3").put_object(Bucket=bucket, Key=prefix + "database.dump.zst", Body=b"dump")

    result = release_for_expiry(bucket, kind, FAKED, KEEP, now=datetime.now(UTC) + timedelta(days=30))

    assert result.protected == result.expirable == result.leftovers == []
    assert _tag(bucket, prefix + "database.dump.zst") is None


def test_keeping_no_verified_backup_is_refused(bucket: str) -> None:
    with pytest.raises(ConfigError, match="at least 1"):
        release_for_expiry(bucket, "nightly", FAKED, 0)


def test_dbops_verify_applies_retention_only_when_given_how_many_to_keep(
    app_db: ConnectionSpec, bucket: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from dbops.cli import main

    monkeypatch.delenv("DBOPS_RETENTION_KEEP", raising=False)
    older, newer = _backup(app_db, bucket, 1), _backup(app_db, bucket, 2)

    assert main(["verify", older.id, "--bucket", bucket]) == 0
    assert _tag(bucket, older.dump.key) is None  # no N given: nothing tagged (the stack's N may differ)

    assert main(["verify", "latest", "--bucket", bucket, "--keep-verified", "1"]) == 0
    assert "retention (nightly of app): 1 backup kept whatever their age, 1 expire" in capsys.readouterr().out
    assert (_tag(bucket, older.dump.key), _tag(bucket, newer.dump.key)) == ("true", "false")

    with pytest.raises(SystemExit) as refused:
        main(["verify", "latest", "--bucket", bucket, "--keep-verified", "0"])
    assert refused.value.code == 2
    assert "keep at least 1 verified backup" in capsys.readouterr().err
