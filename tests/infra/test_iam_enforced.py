"""Least privilege proven, not only declared (issue #24): the synthesized roles' policies loaded into a moto server
that enforces IAM, each role's S3 calls made with the keys of an IAM user holding exactly that role's policies.

What moto 5.2 enforces (`INITIAL_NO_AUTH_ACTION_COUNT=0`): the S3 action of each request (PUT object, multipart,
DELETE with and without a version, PUT ?tagging) against the policy's actions and object ARNs. What it cannot decide
is proven on the template instead (`test_*_on_the_template`), and each such test says why:

- `s3:PutObjectRetention` and `s3:BypassGovernanceRetention`: moto authorizes `PUT ?retention` as `s3:PutObject`
  and a delete with the bypass header as `s3:DeleteObjectVersion`, and its S3 lets a retention be shortened;
- conditions (`s3:prefix` on `ListBucket`; the bucket policy's `aws:SecureTransport` denials): moto supplies no
  request context for them (an unmet condition even turns an Allow into a deny), so neither is loaded into moto.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from local_stack.postgres import free_port
from tests.infra.conftest import ACCOUNT, REGION, Synth

BUCKET = "dbops-test-backups"
LOCKED_KEY = "backups/nightly/sprint_reports_v2/20250101T000000Z-abcdef/archive.dump.zst"
VERIFICATION_KEY = "backups/nightly/sprint_reports_v2/20250101T000000Z-abcdef/verification.json"


# ---- the template's policies, with their CloudFormation tokens resolved --------------------------------------------


def resolve(value: Any, template: dict[str, Any], bucket_id: str) -> Any:
    """The shapes the template's policies hold: the backup bucket's Arn and Ref, other resources' Arn and Ref (as ARNs
    naming the logical id: never an S3 object), pseudo parameters, Fn::Join."""
    if isinstance(value, list):
        return [resolve(v, template, bucket_id) for v in value]
    if not isinstance(value, dict):
        return value
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(str(resolve(p, template, bucket_id)) for p in parts)
    if "Fn::GetAtt" in value:
        logical_id, attribute = value["Fn::GetAtt"]
        if logical_id == bucket_id:
            assert attribute == "Arn", attribute
            return f"arn:aws:s3:::{BUCKET}"
        return f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:resource/{logical_id}/{attribute}"
    if "Ref" in value:
        pseudo = {"AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::Partition": "aws", "AWS::URLSuffix": ""}
        name = value["Ref"]
        if name in pseudo:
            return pseudo[name]
        return BUCKET if name == bucket_id else f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:resource/{name}"
    return {k: resolve(v, template, bucket_id) for k, v in value.items()}


def bucket_id(synthesized: Synth) -> str:
    return synthesized.logical_id(synthesized.stack.storage.bucket)


_TEMPLATES: dict[int, dict[str, Any]] = {}


def template_of(synthesized: Synth) -> dict[str, Any]:
    """The template as JSON, made once (Template.to_json is slow)."""
    if id(synthesized) not in _TEMPLATES:
        _TEMPLATES[id(synthesized)] = synthesized.json
    return _TEMPLATES[id(synthesized)]


def role_documents(synthesized: Synth) -> dict[str, list[dict[str, Any]]]:
    """Every role's identity policy statements (inline AWS::IAM::Policy attached to it, its Policies, managed
    policies of the stack), resolved, by the role's logical id."""
    template = template_of(synthesized)
    resources = template["Resources"]
    found: dict[str, list[dict[str, Any]]] = {
        role_id: [s for p in role["Properties"].get("Policies", []) for s in p["PolicyDocument"]["Statement"]]
        for role_id, role in resources.items()
        if role["Type"] == "AWS::IAM::Role"
    }
    for resource in resources.values():
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for role in resource["Properties"].get("Roles", []):
                found[role["Ref"]] += resource["Properties"]["PolicyDocument"]["Statement"]
    bucket = bucket_id(synthesized)
    return {role: resolve(statements, template, bucket) for role, statements in found.items()}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def grants(statement: dict[str, Any], action: str) -> bool:
    """An Allow statement whose actions match `action` (wildcards included: `s3:*`, `*`, `s3:Put*`)."""
    if statement["Effect"] != "Allow":
        return False
    if "NotAction" in statement:
        return not any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in as_list(statement["NotAction"]))
    return any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in as_list(statement["Action"]))


# ---- a moto server enforcing IAM, in a process of its own ----------------------------------------------------------


@dataclass
class EnforcedAws:
    endpoint: str
    keys: dict[str, tuple[str, str]]  # user name -> (access key id, secret)

    def s3(self, user: str) -> Any:
        key_id, secret = self.keys[user]
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
        )


@contextlib.contextmanager
def moto_enforcing_iam() -> Iterator[str]:
    """`python -m moto.server` on a free loopback port, INITIAL_NO_AUTH_ACTION_COUNT=0 in its environment before
    moto is imported (this test process's own moto, if any, stays as it is)."""
    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{endpoint}/moto-api/", timeout=1)
                break
            except requests.ConnectionError:
                assert server.poll() is None and time.monotonic() < deadline, "the moto server did not start"
                time.sleep(0.1)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)


def set_enforcement(endpoint: str, unauthenticated_requests: str) -> None:
    """The server's INITIAL_NO_AUTH_ACTION_COUNT ("inf": off, while the test sets the account up; "0": on)."""
    requests.post(f"{endpoint}/moto-api/reset-auth", data=unauthenticated_requests, timeout=10).raise_for_status()


ROLES = {
    # user name -> how the role is found in the stack
    "backup": lambda stack: stack.functions.by_name["Backup"].role,
    "restore": lambda stack: stack.functions.by_name["RestoreSafetyBackup"].role,
    "restore-validate": lambda stack: stack.functions.by_name["RestoreValidate"].role,
    "task": lambda stack: stack.fargate_task.task_definition.task_role,
    "health": lambda stack: stack.functions.by_name["Health"].role,
    "rehearsal": lambda stack: stack.functions.by_name["RehearsalPrepare"].role,
}
ADMIN_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


@pytest.fixture(scope="module")
def enforced(synthesized: Synth) -> Iterator[EnforcedAws]:
    documents = role_documents(synthesized)
    with moto_enforcing_iam() as endpoint:
        set_enforcement(endpoint, "inf")
        iam = boto3.client(
            "iam", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="x", aws_secret_access_key="y"
        )
        keys = {}
        for user, role in [*ROLES.items(), ("admin", None)]:
            iam.create_user(UserName=user)
            if role is None:
                document = ADMIN_POLICY
            else:
                statements = documents[synthesized.logical_id(role(synthesized.stack))]
                document = {"Version": "2012-10-17", "Statement": statements}
            iam.put_user_policy(UserName=user, PolicyName="role", PolicyDocument=json.dumps(document))
            key = iam.create_access_key(UserName=user)["AccessKey"]
            keys[user] = (key["AccessKeyId"], key["SecretAccessKey"])
        aws = EnforcedAws(endpoint=endpoint, keys=keys)
        set_enforcement(endpoint, "0")
        admin = aws.s3("admin")
        admin.create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}, ObjectLockEnabledForBucket=True
        )
        yield aws


def denied(call: Any, **kwargs: Any) -> bool:
    try:
        call(**kwargs)
    except ClientError as e:
        return e.response["Error"]["Code"] == "AccessDenied"
    return False


def locked_backup(aws: EnforcedAws, key: str = LOCKED_KEY) -> str:
    """A backup object written by the admin, locked (compliance) for a day: its version id."""
    until = datetime.now(UTC) + timedelta(days=1)
    put = aws.s3("admin").put_object(
        Bucket=BUCKET, Key=key, Body=b"backup", ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until
    )
    return str(put["VersionId"])


def versions(aws: EnforcedAws, key: str) -> dict[str, bytes]:
    s3 = aws.s3("admin")
    listed = s3.list_object_versions(Bucket=BUCKET, Prefix=key).get("Versions", [])
    return {
        v["VersionId"]: s3.get_object(Bucket=BUCKET, Key=key, VersionId=v["VersionId"])["Body"].read() for v in listed
    }


# ---- enforced by moto ----------------------------------------------------------------------------------------------


def test_enforcement_is_on(enforced: EnforcedAws) -> None:
    """The check itself: a user without a policy for it is refused, the admin is not, and the same user is let
    through where its policy grants it (the refusal is its policy's, not a user moto cannot authenticate)."""
    assert denied(enforced.s3("health").put_object, Bucket=BUCKET, Key="restores/x.json", Body=b"{}")
    enforced.s3("admin").put_object(Bucket=BUCKET, Key="restores/x.json", Body=b"{}")
    enforced.s3("health").put_object(Bucket=BUCKET, Key="health/x/counters.json", Body=b"{}")


@pytest.mark.parametrize("user", ["backup", "task"])
def test_the_backup_roles_write_backups_of_every_kind(enforced: EnforcedAws, user: str) -> None:
    s3 = enforced.s3(user)
    for kind in ("nightly", "predeploy", "manual"):
        prefix = f"backups/{kind}/billing/20250102T000000Z-{user}/"
        s3.put_object(Bucket=BUCKET, Key=prefix + "manifest.json", Body=b"{}")
        upload = s3.create_multipart_upload(Bucket=BUCKET, Key=prefix + "archive.dump.zst")["UploadId"]
        etag = s3.upload_part(
            Bucket=BUCKET, Key=prefix + "archive.dump.zst", UploadId=upload, PartNumber=1, Body=b"x" * 16
        )["ETag"]
        s3.complete_multipart_upload(
            Bucket=BUCKET,
            Key=prefix + "archive.dump.zst",
            UploadId=upload,
            MultipartUpload={"Parts": [{"ETag": etag, "PartNumber": 1}]},
        )
        s3.put_object_tagging(
            Bucket=BUCKET, Key=prefix + "manifest.json", Tagging={"TagSet": [{"Key": "dbops-expirable", "Value": "x"}]}
        )
        assert s3.get_object(Bucket=BUCKET, Key=prefix + "manifest.json")["Body"].read() == b"{}"
    assert denied(s3.put_object, Bucket=BUCKET, Key="health/counters.json", Body=b"{}")  # outside backups/


@pytest.mark.parametrize("user", ["backup", "task", "restore", "restore-validate"])
def test_no_role_deletes_a_backup_version(enforced: EnforcedAws, user: str) -> None:
    """DeleteObjectVersion (with or without the governance bypass header: moto checks s3:DeleteObjectVersion for
    both) is refused: the only way to remove a version is the lifecycle's, once its lock has ended."""
    version = locked_backup(enforced)
    s3 = enforced.s3(user)
    assert denied(s3.delete_object, Bucket=BUCKET, Key=LOCKED_KEY, VersionId=version)
    assert denied(s3.delete_object, Bucket=BUCKET, Key=LOCKED_KEY, VersionId=version, BypassGovernanceRetention=True)
    assert versions(enforced, LOCKED_KEY)[version] == b"backup"


@pytest.mark.parametrize("user", ["backup", "task"])
def test_a_backup_role_overwrites_or_deletes_only_on_top_of_the_locked_version(
    enforced: EnforcedAws, user: str
) -> None:
    """The backup roles hold s3:PutObject and s3:DeleteObject on backups/* by design (a backup is written under a
    new id; a failed backup's objects are cleaned up: dbops.backup.run), so IAM lets them through here. On the
    versioned, Object Lock bucket neither destroys a backup: a PUT adds a version, a delete adds a delete marker,
    and the locked version stays whole."""
    key = f"backups/nightly/billing/20250103T000000Z-{user}/archive.dump.zst"
    version = locked_backup(enforced, key)
    s3 = enforced.s3(user)
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"forged")
    s3.delete_object(Bucket=BUCKET, Key=key)
    kept = versions(enforced, key)
    assert kept[version] == b"backup"
    assert sorted(kept.values()) == [b"backup", b"forged"]


@pytest.mark.parametrize("user", ["restore", "restore-validate"])
def test_a_restore_step_writes_under_backups_only_its_safety_backup_and_verification_records(
    enforced: EnforcedAws, user: str
) -> None:
    s3 = enforced.s3(user)
    allowed = [
        f"backups/prerestore/sprint_reports_v2/20250104T000000Z-{user}/archive.dump.zst",  # the safety backup
        f"backups/prerestore/sprint_reports_v2/20250104T000000Z-{user}/manifest.json",
        f"backups/pointintime/sprint_reports_v2/20250104T000000Z-{user}/archive.dump.zst",  # a restore as of a time
        VERIFICATION_KEY,  # verifying the backup it restores
        f"restores/sprint_reports_v2/{user}.json",
        f"drills/sprint_reports_v2/{user}.json",
    ]
    for key in allowed:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"{}")
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key=allowed[0])["UploadId"]
    s3.abort_multipart_upload(Bucket=BUCKET, Key=allowed[0], UploadId=upload)
    s3.delete_object(Bucket=BUCKET, Key=allowed[1])  # a failed safety backup's cleanup
    locked_backup(enforced)
    for kind in ("nightly", "predeploy", "manual"):
        prefix = f"backups/{kind}/sprint_reports_v2/20250101T000000Z-abcdef/"
        for name in ("archive.dump.zst", "manifest.json", "archive.dump.zst.part-0001"):
            assert denied(s3.put_object, Bucket=BUCKET, Key=prefix + name, Body=b"forged"), prefix + name
            assert denied(s3.create_multipart_upload, Bucket=BUCKET, Key=prefix + name), prefix + name
            assert denied(s3.delete_object, Bucket=BUCKET, Key=prefix + name), prefix + name
            assert denied(s3.put_object_tagging, Bucket=BUCKET, Key=prefix + name, Tagging={"TagSet": []}), (
                prefix + name
            )
    assert s3.get_object(Bucket=BUCKET, Key=LOCKED_KEY)["Body"].read() == b"backup"  # it reads every backup


@pytest.mark.parametrize("user", ["health", "rehearsal"])
def test_the_other_roles_write_nothing_under_backups(enforced: EnforcedAws, user: str) -> None:
    s3 = enforced.s3(user)
    for key in (LOCKED_KEY, VERIFICATION_KEY, "backups/prerestore/sprint_reports_v2/x/archive.dump.zst"):
        assert denied(s3.put_object, Bucket=BUCKET, Key=key, Body=b"forged"), key
        assert denied(s3.delete_object, Bucket=BUCKET, Key=key), key
    own = "health/sprint_reports_v2/counters.json" if user == "health" else "rehearsals/sprint_reports_v2/x/r.json"
    s3.put_object(Bucket=BUCKET, Key=own, Body=b"{}")


@pytest.mark.parametrize("user", ["restore", "task"])
def test_the_stage_step_publishes_its_progress_and_reads_it_back(enforced: EnforcedAws, user: str) -> None:
    """Stage (a restore step's function, or the Fargate task) writes restore-progress/<execution>.json
    (dbops.restore.progress_file); a role that stages nothing may not."""
    s3 = enforced.s3(user)
    key = f"restore-progress/restore-20250104T000000-{user}.json"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"{}")
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"{}"
    assert denied(enforced.s3("health").put_object, Bucket=BUCKET, Key=key, Body=b"{}")


@pytest.mark.parametrize("user", ["backup", "task"])
def test_the_backup_roles_keep_the_retention_ledger(enforced: EnforcedAws, user: str) -> None:
    """A retention pass reads and rewrites retention/<kind>/<database>.json (dbops.backup.retention_ledger); a role
    that runs no retention pass may not write it."""
    s3 = enforced.s3(user)
    key = f"retention/nightly/ledger_{user}.json"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"{}")
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"{}"
    for other in ("health", "restore", "rehearsal"):
        assert denied(enforced.s3(other).put_object, Bucket=BUCKET, Key=key, Body=b"{}"), other


# ---- proven on the template (what moto cannot decide) --------------------------------------------------------------


# what the replication role may do (infra/replication.py): read the rule and the versions, write the replicas
REPLICATION_ACTIONS = {
    "s3:GetReplicationConfiguration",
    "s3:ListBucket",
    "s3:GetObjectVersionForReplication",
    "s3:GetObjectVersionAcl",
    "s3:GetObjectVersionTagging",
    "s3:GetObjectRetention",
    "s3:GetObjectLegalHold",
    "s3:ReplicateObject",
    "s3:ReplicateTags",
    "s3:ObjectOwnerOverrideToBucketOwner",
    "kms:Decrypt",
    "kms:Encrypt",
    "kms:GenerateDataKey",
}


def all_statements(synthesized: Synth) -> list[tuple[str, dict[str, Any]]]:
    """(where, statement) for every policy of the template: roles' policies and resource (bucket, key, topic...)
    policies alike."""
    found: list[tuple[str, dict[str, Any]]] = []
    for role, statements in role_documents(synthesized).items():
        found += [(role, s) for s in statements]
    for logical_id, resource in template_of(synthesized)["Resources"].items():
        properties = resource.get("Properties", {})
        for name in ("PolicyDocument", "KeyPolicy"):
            if name in properties and resource["Type"] not in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
                found += [(logical_id, s) for s in properties[name]["Statement"]]
    return found


def test_nothing_in_the_stack_may_bypass_governance_retention_on_the_template(synthesized: Synth) -> None:
    """moto cannot enforce s3:BypassGovernanceRetention (it authorizes the bypass header as s3:DeleteObjectVersion
    and ignores it on PutObjectRetention): no Allow statement of any policy of the stack grants it, by name or by a
    wildcard (`s3:*`, `*`, `s3:Bypass*`), nor s3:DeleteObjectVersion."""
    for action in ("s3:BypassGovernanceRetention", "s3:DeleteObjectVersion", "s3:PutBucketObjectLockConfiguration"):
        granting = [where for where, s in all_statements(synthesized) if grants(s, action)]
        assert granting == [], (action, granting)


def test_retention_is_put_only_on_backups_a_role_writes_on_the_template(synthesized: Synth) -> None:
    """moto cannot tell PutObjectRetention from PutObject (it authorizes `PUT ?retention` as s3:PutObject) nor a
    shortening from a lengthening (its S3 accepts both). On the template: s3:PutObjectRetention is granted only by
    the LockBackups statements, only on object ARNs under backups/, only to the roles that write backups (the Backup
    function and the Fargate task: every kind; a restore step: its prerestore and pointintime backups alone), and
    the bucket's objects are locked in compliance mode (tests/infra/conftest.py), where S3 refuses a shortening to
    everybody; the code only ever lengthens a retention (dbops.aws.s3stream.extend_lock, tests/unit)."""
    stack = synthesized.stack
    role = {name: synthesized.logical_id(find(stack)) for name, find in ROLES.items()}
    bucket = f"arn:aws:s3:::{BUCKET}"
    granting: dict[str, list[str]] = {}
    for where, statement in all_statements(synthesized):
        if grants(statement, "s3:PutObjectRetention"):
            assert statement["Sid"] in ("LockBackups", "LockBackupsOfEveryKind"), (where, statement)
            assert as_list(statement["Action"]) == ["s3:PutObjectRetention", "s3:GetObjectRetention"]
            assert "Condition" not in statement
            granting.setdefault(where, []).extend(as_list(statement["Resource"]))
    assert granting[role["backup"]] == [f"{bucket}/backups/*"]
    assert f"{bucket}/backups/*" in granting[role["task"]]  # its restore step's grant besides
    safety = [f"{bucket}/backups/prerestore/*", f"{bucket}/backups/pointintime/*"]
    restore_steps = [
        synthesized.logical_id(f.role) for n, f in stack.functions.by_name.items() if n.startswith("Restore")
    ]
    assert restore_steps and all(granting[r] == safety for r in restore_steps)
    assert set(granting) == {role["backup"], role["task"], *restore_steps}
    assert synthesized.settings["backup_lock"]["mode"] == "compliance"


def test_listing_is_conditioned_on_the_granted_prefixes_on_the_template(synthesized: Synth) -> None:
    """moto supplies no s3:prefix to conditions (and turns an unmet condition into a deny), so listing is proven
    here: every s3:ListBucket grant is on the bucket's ARN alone and carries an s3:prefix condition naming only
    prefixes the role also reads."""
    statements = all_statements(synthesized)
    for where, statement in statements:
        if "Replication" in where:  # the role S3 itself assumes to replicate: S3 lists the bucket, no function does
            assert set(as_list(statement["Action"])) <= REPLICATION_ACTIONS, (where, statement["Action"])
            continue
        if grants(statement, "s3:ListBucket") and "s3:ListBucket" in as_list(statement.get("Action", [])):
            assert statement["Resource"] == f"arn:aws:s3:::{BUCKET}", where
            prefixes = statement["Condition"]["StringLike"]["s3:prefix"]
            reads = [
                r.removeprefix(f"arn:aws:s3:::{BUCKET}/")
                for other, s in statements
                if other == where and grants(s, "s3:GetObject")
                for r in as_list(s["Resource"])
            ]
            assert set(prefixes) <= set(reads), (where, prefixes, reads)


def test_the_bucket_policy_only_denies_on_the_template(synthesized: Synth) -> None:
    """Not loaded into moto (its aws:SecureTransport / s3:TlsVersion conditions have no request context there): it
    holds Deny statements alone, so it grants no role anything its identity policy does not."""
    [policy] = [
        r
        for r in synthesized.resources("AWS::S3::BucketPolicy").values()
        if r["Properties"]["Bucket"] == {"Ref": bucket_id(synthesized)}
    ]
    assert {s["Effect"] for s in policy["Properties"]["PolicyDocument"]["Statement"]} == {"Deny"}
