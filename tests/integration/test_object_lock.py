"""Immutable backups: S3 Object Lock on the moto server (moto 5.2 enforces it on deletes of a locked version).

A real backup of a real database into a bucket created with Object Lock: every archive and the manifest written
locked (a nightly backup for the lock's days, a predeploy one for its kind's age), the verification record not.
Under a compliance lock nothing deletes a backup's versions: not dbops' own paths (which only ever hide an object
behind a delete marker), not an administrator with the governance bypass; a governance lock yields to the bypass.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError
from psycopg import sql

from dbops import aws
from dbops.aws import s3stream
from dbops.backup import catalog
from dbops.backup.catalog import BackupManifest
from dbops.backup.retention import release_for_expiry
from dbops.backup.run import BackupRequest, discard, run_backup
from dbops.backup.verify import verify_backup
from dbops.cli import main
from dbops.config.backup import BackupLock, RetentionClasses
from dbops.postgres.connection import ConnectionSpec, connect
from infra.retention_settings import RetentionDays
from local_stack.aws import LocalAws
from local_stack.postgres import LocalPostgres
from tests.integration.lifecycle_helpers import (
    SimulatedLifecycle,
    configure_like_the_stack,
    five_good_nights_then_35_failing,
    whole,
)

DATABASE = "app"
COMPLIANCE = BackupLock(mode="compliance", days=30, kind_days={"predeploy": 90})
GOVERNANCE = BackupLock(mode="governance", days=7)


@pytest.fixture
def locked_bucket(local_aws: LocalAws) -> str:
    """A bucket as the stack creates it with backup_lock: versioned, Object Lock enabled, no default retention."""
    name = f"dbops-lock-{uuid.uuid4().hex[:12]}"
    aws.client("s3").create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


@pytest.fixture
def app_db(pg18: LocalPostgres) -> Iterator[ConnectionSpec]:
    admin = ConnectionSpec.from_url(pg18.url())
    name = f"l_{uuid.uuid4().hex[:10]}"
    with connect(admin) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    spec = admin.for_database(name)
    with connect(spec) as conn:
        conn.execute("CREATE TABLE nights (day int PRIMARY KEY, note text NOT NULL)")
        conn.execute("INSERT INTO nights SELECT g, 'night ' || g FROM generate_series(1, 100) g")
    yield spec
    with connect(admin) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _backup(spec: ConnectionSpec, bucket: str, lock: BackupLock, kind: str = "nightly") -> BackupManifest:
    return run_backup(spec, BackupRequest(database=DATABASE, bucket=bucket, kind=kind, lock=lock))  # type: ignore[arg-type]


def _version(bucket: str, key: str) -> str:
    return str(aws.client("s3").head_object(Bucket=bucket, Key=key)["VersionId"])


def _refused(call: object, **kwargs: object) -> str:
    with pytest.raises(ClientError) as refused:
        call(**kwargs)  # type: ignore[operator]
    return str(refused.value.response["Error"]["Code"])


def _days_from_now(lock: s3stream.ObjectLock | None) -> float:
    assert lock is not None
    return (lock.until - datetime.now(UTC)) / timedelta(days=1)


def test_every_backup_object_is_written_locked_for_its_kind_and_the_verification_record_is_not(
    app_db: ConnectionSpec, locked_bucket: str
) -> None:
    nightly = _backup(app_db, locked_bucket, COMPLIANCE)
    predeploy = _backup(app_db, locked_bucket, COMPLIANCE, kind="predeploy")
    assert verify_backup(locked_bucket, nightly.id).ok

    for manifest, days in ((nightly, 30), (predeploy, 90)):
        keys = [o.key for o in catalog.stored_objects(manifest)] + [manifest.prefix + catalog.MANIFEST]
        assert len(keys) == (2 if manifest.kind == "nightly" else 3)  # predeploy: the schema-only SQL too
        for key in keys:
            lock = s3stream.get_lock(locked_bucket, key)
            assert lock is not None and lock.mode == "COMPLIANCE", key
            assert _days_from_now(lock) == pytest.approx(days, abs=0.01), key
    # rewritten by every verification: never locked (its versions would pile up under the lock)
    assert s3stream.get_lock(locked_bucket, nightly.prefix + catalog.VERIFICATION) is None


def test_a_compliance_locked_backup_cannot_be_deleted_overwritten_or_bypassed(
    app_db: ConnectionSpec, locked_bucket: str
) -> None:
    manifest = _backup(app_db, locked_bucket, COMPLIANCE)
    s3 = aws.client("s3")
    archive = manifest.dump.key
    version = _version(locked_bucket, archive)

    # an administrator deleting the version, with or without the governance bypass header: refused
    assert _refused(s3.delete_object, Bucket=locked_bucket, Key=archive, VersionId=version) == "AccessDenied"
    assert (
        _refused(s3.delete_object, Bucket=locked_bucket, Key=archive, VersionId=version, BypassGovernanceRetention=True)
        == "AccessDenied"
    )
    errors = s3.delete_objects(
        Bucket=locked_bucket,
        Delete={"Objects": [{"Key": archive, "VersionId": version}]},
        BypassGovernanceRetention=True,
    )["Errors"]
    assert [(e["Key"], e["Code"]) for e in errors] == [(archive, "AccessDenied")]

    # an overwrite is a new version on top: the locked one is still there, byte for byte
    s3.put_object(Bucket=locked_bucket, Key=archive, Body=b"ransomware was here")
    # dbops' own delete path (a failed backup's leftovers) only hides the object behind a delete marker
    discard(locked_bucket, [archive])
    assert not s3stream.exists(locked_bucket, archive)
    versions = s3.list_object_versions(Bucket=locked_bucket, Prefix=archive)["Versions"]
    assert version in {v["VersionId"] for v in versions}
    original = s3.get_object(Bucket=locked_bucket, Key=archive, VersionId=version)["Body"].read()
    # the catalog no longer lists it (its archive is hidden), but the locked version matches its manifest whole
    assert catalog.list_backups(locked_bucket, database=DATABASE) == []
    assert (len(original), hashlib.sha256(original).hexdigest()) == (manifest.dump.size, manifest.dump.sha256)


def test_a_governance_lock_yields_only_to_the_bypass(app_db: ConnectionSpec, locked_bucket: str) -> None:
    manifest = _backup(app_db, locked_bucket, GOVERNANCE)
    s3 = aws.client("s3")
    key = manifest.prefix + catalog.MANIFEST
    lock = s3stream.get_lock(locked_bucket, key)
    assert lock is not None and lock.mode == "GOVERNANCE" and _days_from_now(lock) == pytest.approx(7, abs=0.01)
    version = _version(locked_bucket, key)

    assert _refused(s3.delete_object, Bucket=locked_bucket, Key=key, VersionId=version) == "AccessDenied"
    s3.delete_object(Bucket=locked_bucket, Key=key, VersionId=version, BypassGovernanceRetention=True)
    assert catalog.list_backups(locked_bucket, database=DATABASE) == []


@pytest.mark.xfail(
    strict=True,
    reason="moto 5.2.5 does not refuse shortening a retention (S3 refuses it for compliance, and for governance "
    "without the bypass): when moto enforces it this test passes, and the marker must go",
)
def test_a_compliance_lock_cannot_be_shortened_by_an_administrator(app_db: ConnectionSpec, locked_bucket: str) -> None:
    manifest = _backup(app_db, locked_bucket, COMPLIANCE)
    sooner = datetime.now(UTC) + timedelta(days=1)
    assert (
        _refused(
            aws.client("s3").put_object_retention,
            Bucket=locked_bucket,
            Key=manifest.dump.key,
            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": sooner},
            BypassGovernanceRetention=True,
        )
        == "AccessDenied"
    )


def test_dbops_only_ever_lengthens_a_lock(app_db: ConnectionSpec, locked_bucket: str) -> None:
    manifest = _backup(app_db, locked_bucket, COMPLIANCE)
    key = manifest.dump.key
    before = s3stream.get_lock(locked_bucket, key)
    assert before is not None

    assert not s3stream.extend_lock(locked_bucket, key, datetime.now(UTC) + timedelta(days=1))  # shorter: untouched
    assert s3stream.get_lock(locked_bucket, key) == before
    assert s3stream.extend_lock(locked_bucket, key, before.until + timedelta(days=60))
    after = s3stream.get_lock(locked_bucket, key)
    assert after is not None and after.mode == "COMPLIANCE" and after.until - before.until == timedelta(days=60)
    # an unlocked object (the verification record) is left unlocked
    assert verify_backup(locked_bucket, manifest.id).ok
    assert not s3stream.extend_lock(locked_bucket, manifest.prefix + catalog.VERIFICATION, after.until)


def test_retention_tags_locked_backups_and_lengthens_a_monthly_ones_lock(
    app_db: ConnectionSpec, locked_bucket: str
) -> None:
    """Tagging is allowed on locked objects; the month's first verified nightly backup becomes a monthly one and
    its lock is lengthened to the monthly age, counted from when each object was written."""
    first, second = _backup(app_db, locked_bucket, COMPLIANCE), _backup(app_db, locked_bucket, COMPLIANCE)
    for manifest in (first, second):
        assert verify_backup(locked_bucket, manifest.id).ok

    result = release_for_expiry(locked_bucket, "nightly", DATABASE, 1, classes=RetentionClasses(weekly=90, monthly=365))

    assert result.classes == {first.id: "monthly", second.id: "nightly"}
    assert result.expirable == [first.id] and result.protected == [second.id]
    assert sorted(result.locks_extended) == sorted([first.dump.key, first.prefix + catalog.MANIFEST])
    for key in (first.dump.key, first.prefix + catalog.MANIFEST):
        assert _days_from_now(s3stream.get_lock(locked_bucket, key)) == pytest.approx(365, abs=0.01)
        tags = s3stream.get_tags(locked_bucket, key)
        assert tags == {"dbops-expirable": "true", "dbops-class": "monthly"}
    assert _days_from_now(s3stream.get_lock(locked_bucket, second.dump.key)) == pytest.approx(30, abs=0.01)
    # a second pass changes nothing
    again = release_for_expiry(locked_bucket, "nightly", DATABASE, 1, classes=RetentionClasses(weekly=90, monthly=365))
    assert again.retagged == [] and again.locks_extended == []


def test_dbops_verify_keep_verified_leaves_the_classes_a_backup_pass_gave(
    app_db: ConnectionSpec, locked_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`dbops verify --keep-verified N` does not know the stack's weekly and monthly ages: its retention pass moves
    the expirable tags and leaves each backup's class (demoted to nightly, a monthly backup would expire at the
    nightly age)."""
    first, second = _backup(app_db, locked_bucket, COMPLIANCE), _backup(app_db, locked_bucket, COMPLIANCE)
    assert verify_backup(locked_bucket, first.id).ok
    release_for_expiry(locked_bucket, "nightly", DATABASE, 1, classes=RetentionClasses(weekly=90, monthly=365))
    assert s3stream.get_tags(locked_bucket, first.dump.key) == {"dbops-expirable": "false", "dbops-class": "monthly"}

    assert main(["verify", second.id, "--bucket", locked_bucket, "--keep-verified", "1"]) == 0
    assert "1 expire at the bucket's age" in capsys.readouterr().out
    for manifest, tags in (
        (first, {"dbops-expirable": "true", "dbops-class": "monthly"}),
        (second, {"dbops-expirable": "false", "dbops-class": "nightly"}),
    ):
        for key in (manifest.dump.key, manifest.prefix + catalog.MANIFEST):
            assert s3stream.get_tags(locked_bucket, key) == tags, key
    assert _days_from_now(s3stream.get_lock(locked_bucket, first.dump.key)) == pytest.approx(365, abs=0.01)
    # with the classes switched off (the Backup function's pass without its ages), every backup is nightly again
    release_for_expiry(locked_bucket, "nightly", DATABASE, 1, classes=RetentionClasses())
    assert s3stream.get_tags(locked_bucket, first.dump.key) == {"dbops-expirable": "true", "dbops-class": "nightly"}


def test_forty_nights_the_last_35_failing_under_a_compliance_lock_end_as_without_it(
    app_db: ConnectionSpec, pg18: LocalPostgres, locked_bucket: str
) -> None:
    """tests/integration/test_retention.py's simulation with every backup locked 30 days: the lifecycle's expiry
    (a delete marker on a versioned bucket) still takes backups 1 and 2 at 30 days and leaves exactly the newest 3
    verified listed; the expired backups' versions stay under their lock, which the lifecycle's removal of
    noncurrent versions cannot delete until it ends."""
    configure_like_the_stack(locked_bucket, RetentionDays())
    lifecycle = SimulatedLifecycle(locked_bucket)
    wrong_password = ConnectionSpec.from_url(pg18.url(app_db.dbname, password="not-the-password"))
    backups, expired_on = five_good_nights_then_35_failing(
        lifecycle,
        DATABASE,
        lambda day: _backup(app_db, locked_bucket, COMPLIANCE),
        lambda: run_backup(wrong_password, BackupRequest(database=DATABASE, bucket=locked_bucket, lock=COMPLIANCE)),
    )

    assert {day: keys for day, keys in expired_on.items() if keys} == {32: whole(backups[1]), 33: whole(backups[2])}
    assert [e.manifest.id for e in catalog.list_backups(locked_bucket, database=DATABASE)] == [
        backups[d].id for d in (5, 4, 3)
    ]
    s3 = aws.client("s3")
    for day in (1, 2):  # expired, and still whole underneath: the locked versions cannot be removed yet
        for key in (backups[day].dump.key, backups[day].prefix + catalog.MANIFEST):
            (version,) = [v for v in s3.list_object_versions(Bucket=locked_bucket, Prefix=key)["Versions"]]
            assert _refused(s3.delete_object, Bucket=locked_bucket, Key=key, VersionId=version["VersionId"]) == (
                "AccessDenied"
            )


def test_backups_list_shows_each_backups_class_when_it_expires_and_its_lock(
    app_db: ConnectionSpec, locked_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`dbops backups list`: the month's first verified nightly backup is a monthly one, expiring at the monthly
    age of the bucket's lifecycle rule and locked as long; the newest is kept by retention, locked 30 days."""
    configure_like_the_stack(locked_bucket, RetentionDays(weekly=90, monthly=365))
    first, second = _backup(app_db, locked_bucket, COMPLIANCE), _backup(app_db, locked_bucket, COMPLIANCE)
    for manifest in (first, second):
        assert verify_backup(locked_bucket, manifest.id).ok
    release_for_expiry(locked_bucket, "nightly", DATABASE, 1, classes=RetentionClasses(weekly=90, monthly=365))
    capsys.readouterr()

    assert main(["backups", "list", "--bucket", locked_bucket, "--json"]) == 0
    rows = {row["id"]: row for row in json.loads(capsys.readouterr().out)}
    midnight = datetime.combine(first.finished_at.date(), datetime.min.time(), UTC)
    assert rows[first.id]["class"] == "monthly" and not rows[first.id]["kept_by_retention"]
    assert datetime.fromisoformat(rows[first.id]["expires_at"]) == midnight + timedelta(days=366)
    assert rows[first.id]["lock_mode"] == "COMPLIANCE"
    locked = datetime.fromisoformat(rows[first.id]["locked_until"]) - datetime.now(UTC)
    assert locked / timedelta(days=1) == pytest.approx(365, abs=0.01)
    assert rows[second.id]["class"] == "nightly" and rows[second.id]["kept_by_retention"]
    assert rows[second.id]["expires_at"] is None
    locked = datetime.fromisoformat(rows[second.id]["locked_until"]) - datetime.now(UTC)
    assert locked / timedelta(days=1) == pytest.approx(30, abs=0.01)

    assert main(["backups", "list", "--bucket", locked_bucket, "--keep-verified", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "CLASS" in lines[0] and "EXPIRES" in lines[0]
    (newest,) = [line for line in lines if second.id in line]
    assert "nightly" in newest and "kept: newest 1 verified; locked (compliance) until" in newest
    (monthly,) = [line for line in lines if first.id in line]
    assert f"monthly  {(midnight + timedelta(days=366)):%Y-%m-%d}; locked (compliance) until" in monthly


def test_the_dbops_backup_cli_locks_what_it_writes_from_its_flags_or_dbops_backup_lock(
    app_db: ConnectionSpec, locked_bucket: str, local_aws: LocalAws
) -> None:
    """Run outside the stack, `dbops backup` takes the lock from --lock-mode/--lock-days, else DBOPS_BACKUP_LOCK
    (the functions' JSON); a half-given pair is refused (exit 2) before anything is written."""
    assert app_db.password is not None
    url = f"postgresql://{app_db.user}:{app_db.password.get_secret_value()}@{app_db.host}:{app_db.port}/{app_db.dbname}"

    def dbops(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "dbops.cli", "backup", "--bucket", locked_bucket, "--database-name", DATABASE]
        inherited = {k: v for k, v in os.environ.items() if k != "DBOPS_BACKUP_LOCK"}
        environment = {**inherited, "DBOPS_DATABASE_URL": url, **env}
        return subprocess.run([*command, *args], capture_output=True, text=True, env=environment, timeout=300)

    flagged = dbops("--lock-mode", "governance", "--lock-days", "3")
    assert flagged.returncode == 0, flagged.stderr
    from_env = dbops(DBOPS_BACKUP_LOCK='{"mode": "compliance", "days": 5}')
    assert from_env.returncode == 0, from_env.stderr
    refused = dbops("--lock-mode", "compliance")
    assert refused.returncode == 2 and "--lock-days" in refused.stdout + refused.stderr

    newest_first = catalog.list_backups(locked_bucket, database=DATABASE)
    assert len(newest_first) == 2
    for entry, (mode, days) in zip(newest_first, [("COMPLIANCE", 5), ("GOVERNANCE", 3)], strict=True):
        for key in (entry.manifest.dump.key, entry.manifest.prefix + catalog.MANIFEST):
            lock = s3stream.get_lock(locked_bucket, key)
            assert lock is not None and lock.mode == mode, key
            assert _days_from_now(lock) == pytest.approx(days, abs=0.01), key
