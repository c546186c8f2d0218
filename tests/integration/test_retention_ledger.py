"""The retention ledger (dbops.backup.retention_ledger): a retention pass reads the tags only of objects that may
have changed, and still puts right what changed behind its back.

Tag reads are counted as S3 requests, by a hook on the client dbops itself uses (dbops.aws caches one per service):
what a pass read is what reached the moto server. The tests read and write tags themselves through a client of
their own, which the hook does not count.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dbops import aws
from dbops.backup import catalog
from dbops.backup.catalog import BackupManifest
from dbops.backup.retention import release_for_expiry
from dbops.backup.retention_ledger import FULL_CHECK_AGE, ledger_key, read_ledger
from dbops.contract import EXPIRABLE_TAG
from dbops.errors import StorageError
from tests.integration.lifecycle_helpers import whole, write_catalog_backup

DATABASE = "ledger_app"
KEEP = 3


class TagReads:
    """The keys of the GetObjectTagging requests made through dbops' S3 client while the fixture is up."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    def __call__(self, params: dict[str, Any], **_: Any) -> None:
        self.keys.append(params["Key"])

    def take(self) -> set[str]:
        taken, self.keys = set(self.keys), []
        return taken


@pytest.fixture
def tag_reads(bucket: str) -> Iterator[TagReads]:
    reads = TagReads()
    events = aws.client("s3").meta.events
    events.register("before-parameter-build.s3.GetObjectTagging", reads, unique_id="ledger-test-reads")
    yield reads
    events.unregister("before-parameter-build.s3.GetObjectTagging", unique_id="ledger-test-reads")


def _backups(bucket: str, count: int, kind: str = "nightly") -> list[BackupManifest]:
    """`count` verified backups a day apart, newest first, then a wait into the next second: S3's LastModified has
    one-second resolution, and the ledger trusts only what was written before the listing's second."""
    now = datetime.now(UTC)
    written = [write_catalog_backup(bucket, DATABASE, now - timedelta(days=n), True, kind) for n in range(count)]
    _next_second()
    return written


def _next_second() -> None:
    time.sleep(1.05 - time.time() % 1)


@functools.cache
def _own_client() -> Any:
    """An S3 client besides the one dbops caches (whose requests the tests count)."""
    return aws.client.__wrapped__("s3")


def _tags(bucket: str, key: str) -> dict[str, str]:
    tag_set = _own_client().get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
    return {t["Key"]: t["Value"] for t in tag_set}


def _set_tags(bucket: str, key: str, tags: dict[str, str]) -> None:
    tagging = {"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]}
    _own_client().put_object_tagging(Bucket=bucket, Key=key, Tagging=tagging)


def _expirable(bucket: str, manifest: BackupManifest) -> set[str | None]:
    """The expirable tag of each object of the backup (one value when the backup is tagged whole)."""
    return {_tags(bucket, key).get(EXPIRABLE_TAG) for key in whole(manifest)}


def test_a_second_pass_with_nothing_changed_reads_no_tags(bucket: str, tag_reads: TagReads) -> None:
    written = _backups(bucket, 5)

    first = release_for_expiry(bucket, "nightly", DATABASE, KEEP)
    assert first.full_check and tag_reads.take() == {key for m in written for key in whole(m)}

    again = release_for_expiry(bucket, "nightly", DATABASE, KEEP)

    assert tag_reads.take() == set() and not again.full_check and again.tags_read == 0
    assert (again.protected, again.expirable) == (first.protected, first.expirable)
    assert [_expirable(bucket, m) for m in written] == [{"false"}] * 3 + [{"true"}] * 2
    # the ledger holds only what is still listed: a backup gone by hand leaves it
    for key in whole(written[4]):
        aws.client("s3").delete_object(Bucket=bucket, Key=key)
    release_for_expiry(bucket, "nightly", DATABASE, KEEP)
    assert set(read_ledger(bucket, "nightly", DATABASE).objects) == {key for m in written[:4] for key in whole(m)}


def test_a_tag_changed_by_hand_is_put_right_at_the_next_full_check(bucket: str, tag_reads: TagReads) -> None:
    written = _backups(bucket, 4)
    release_for_expiry(bucket, "nightly", DATABASE, KEEP)
    newest = written[0].dump.key
    _set_tags(bucket, newest, {EXPIRABLE_TAG: "true"})  # the newest backup released by hand
    tag_reads.take()

    within = release_for_expiry(bucket, "nightly", DATABASE, KEEP, now=datetime.now(UTC) + FULL_CHECK_AGE / 2)
    assert not within.full_check and tag_reads.take() == set()
    assert _tags(bucket, newest)[EXPIRABLE_TAG] == "true"  # not read: left until the full check

    week_on = datetime.now(UTC) + FULL_CHECK_AGE + timedelta(minutes=1)
    full = release_for_expiry(bucket, "nightly", DATABASE, KEEP, now=week_on)

    assert full.full_check and full.retagged == [written[0].id]
    assert tag_reads.take() == {key for m in written for key in whole(m)}
    assert _tags(bucket, newest)[EXPIRABLE_TAG] == "false"
    assert read_ledger(bucket, "nightly", DATABASE).full_check_at == week_on
    after = release_for_expiry(bucket, "nightly", DATABASE, KEEP, now=week_on + timedelta(days=1))
    assert not after.full_check and tag_reads.take() == set()  # the week counts from that full check


def test_an_object_written_again_is_tagged_again_on_the_next_pass(bucket: str, tag_reads: TagReads) -> None:
    written = _backups(bucket, 4)
    release_for_expiry(bucket, "nightly", DATABASE, KEEP)
    released = written[3]
    record = released.prefix + catalog.VERIFICATION
    assert _tags(bucket, record)[EXPIRABLE_TAG] == "true"
    # `dbops verify` again: the verification record is written anew, a new version without tags
    result = catalog.Verification(
        backup_id=released.id, ok=True, checked_at=datetime.now(UTC), seconds=1.0, detail="again"
    )
    catalog.record_verification(bucket, released, result)
    assert _tags(bucket, record) == {}
    tag_reads.take()

    again = release_for_expiry(bucket, "nightly", DATABASE, KEEP)

    assert tag_reads.take() == {record} and again.retagged == [released.id]
    assert _expirable(bucket, released) == {"true"}


def test_a_pass_stopped_half_way_leaves_none_of_its_objects_known_and_the_next_pass_tags_them(
    bucket: str, tag_reads: TagReads
) -> None:
    """The fault is S3's own: an object already carrying 10 tags refuses an 11th, so the pass fails on it after
    tagging the backup's other objects (read in key order). Then the newest backup is deleted by hand: the next
    pass wants the old tags back, which the ledger from before the failed pass would have claimed were there."""
    older = _backups(bucket, 3, kind="predeploy")  # newest first
    release_for_expiry(bucket, "predeploy", DATABASE, KEEP)
    assert _expirable(bucket, older[2]) == {"false"}  # two newer verified: kept
    before = read_ledger(bucket, "predeploy", DATABASE)
    newest = write_catalog_backup(bucket, DATABASE, datetime.now(UTC) + timedelta(hours=1), True, "predeploy")
    record = older[2].prefix + catalog.VERIFICATION
    foreign = {f"owner-{i}": "ops" for i in range(10)}
    _set_tags(bucket, record, foreign)

    with pytest.raises(StorageError, match=record):
        release_for_expiry(bucket, "predeploy", DATABASE, KEEP)

    assert _tags(bucket, older[2].dump.key)[EXPIRABLE_TAG] == "true"  # released before the pass stopped
    stopped = read_ledger(bucket, "predeploy", DATABASE)
    assert stopped.full_check_at == before.full_check_at
    assert set(stopped.objects) == {key for m in older[:2] for key in whole(m)}  # none of older[2]'s
    assert all(stopped.objects[k] == before.objects[k] for k in stopped.objects)

    _set_tags(bucket, record, dict(list(foreign.items())[:9]))  # room for our tag again
    aws.client("s3").delete_object(Bucket=bucket, Key=newest.prefix + catalog.MANIFEST)
    tag_reads.take()

    after = release_for_expiry(bucket, "predeploy", DATABASE, KEEP)

    assert after.protected == [m.id for m in older] and after.expirable == []
    assert _expirable(bucket, older[2]) == {"false"}
    assert set(list(foreign)[:9]) <= set(_tags(bucket, record))  # someone else's tags kept
    assert whole(older[2]) <= tag_reads.take()


@pytest.mark.parametrize("stored", ["{not json", '{"version": 2, "entries": []}', '["retention/x"]'])
def test_a_corrupt_or_unknown_ledger_means_a_full_check_and_the_pass_succeeds(
    bucket: str, tag_reads: TagReads, stored: str
) -> None:
    written = _backups(bucket, 4)
    release_for_expiry(bucket, "nightly", DATABASE, KEEP)
    aws.client("s3").put_object(Bucket=bucket, Key=ledger_key("nightly", DATABASE), Body=stored.encode())
    tag_reads.take()

    result = release_for_expiry(bucket, "nightly", DATABASE, KEEP)

    assert result.full_check and result.ledger_error is None
    assert tag_reads.take() == {key for m in written for key in whole(m)}
    assert [_expirable(bucket, m) for m in written] == [{"false"}] * 3 + [{"true"}]
    assert set(read_ledger(bucket, "nightly", DATABASE).objects) == {key for m in written for key in whole(m)}


def test_an_object_written_again_within_the_second_a_pass_listed_it_is_read_again(
    bucket: str, tag_reads: TagReads
) -> None:
    """S3's LastModified has one-second resolution: a record written, tagged by a pass and written again within one
    second looks unchanged in the next listing. The ledger keeps no entry for what was written in the second the
    listing began, so the next pass reads it."""
    for _attempt in range(3):  # the three steps inside one second of the clock (a loaded machine may miss one)
        _next_second()
        (manifest,) = [write_catalog_backup(bucket, DATABASE, datetime.now(UTC), True)]
        record = manifest.prefix + catalog.VERIFICATION
        release_for_expiry(bucket, "nightly", DATABASE, KEEP)
        written = _own_client().head_object(Bucket=bucket, Key=record)["LastModified"]
        result = catalog.Verification(
            backup_id=manifest.id, ok=True, checked_at=datetime.now(UTC), seconds=1.0, detail="again"
        )
        catalog.record_verification(bucket, manifest, result)
        if _own_client().head_object(Bucket=bucket, Key=record)["LastModified"] == written:
            break
    else:
        pytest.skip("could not write a record twice within one second here")
    assert _tags(bucket, record) == {}
    tag_reads.take()

    release_for_expiry(bucket, "nightly", DATABASE, KEEP)

    assert record in tag_reads.take()
    assert _tags(bucket, record)[EXPIRABLE_TAG] == "false"
