"""`make demo`'s disaster protection: a backup written under an S3 Object Lock (compliance), its deletion refused,
the backup copied to the DR region by the replication stand-in, and restored from that copy by the DR stack's
restore state machine (`dbops restore --region --bucket`) onto a second PostgreSQL server, as after a lost region.
"""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from typing import Any

from botocore.exceptions import ClientError

from dbops import aws
from dbops.backup.catalog import BackupManifest
from dbops.backup.run import BackupRequest, run_backup
from dbops.backup.verify import verify_backup
from dbops.config.backup import BackupLock
from dbops.postgres.connection import ConnectionSpec
from local_stack.fingerprint import table_fingerprints
from local_stack.postgres import LocalPostgres, embedded_bin_dir
from local_stack.replication import LocalReplication, configure_replication

LOCKED_BUCKET = "dbops-demo-locked"
REPLICA_BUCKET = "dbops-demo-replica"
DR_REGION = "us-west-2"
LOCK = BackupLock(mode="compliance", days=30)


def locked_backup_and_dr_restore(step: Any, source: ConnectionSpec, database: str) -> str:
    """The demo's steps (`step(title, fn)`); returns the summary line."""
    s3 = aws.client("s3")

    def locked() -> tuple[LocalReplication, BackupManifest]:
        s3.create_bucket(Bucket=LOCKED_BUCKET, ObjectLockEnabledForBucket=True)
        replication = configure_replication(LOCKED_BUCKET, REPLICA_BUCKET, DR_REGION)
        manifest = run_backup(source, BackupRequest(database=database, bucket=LOCKED_BUCKET, lock=LOCK))
        assert verify_backup(LOCKED_BUCKET, manifest.id).ok
        head = s3.head_object(Bucket=LOCKED_BUCKET, Key=manifest.dump.key)
        print(f"    {manifest.dump.key}: {head['ObjectLockMode']} until {head['ObjectLockRetainUntilDate']:%Y-%m-%d}")
        return replication, manifest

    replication, manifest = step("a nightly backup under a compliance Object Lock (30 days)", locked)
    fingerprints = table_fingerprints(source)

    def delete() -> bool:
        manifest_key = manifest.prefix + "manifest.json"
        version = s3.head_object(Bucket=LOCKED_BUCKET, Key=manifest_key)["VersionId"]
        try:
            s3.delete_object(Bucket=LOCKED_BUCKET, Key=manifest_key, VersionId=version)
        except ClientError as exc:
            print(f"    refused: {exc.response['Error']['Code']}: {exc.response['Error']['Message']}")
            return True
        print("    DELETED: the lock did not hold")
        return False

    refused = step("delete the locked manifest's version (compliance: refused to anyone, root included)", delete)

    def replicate() -> None:
        copied = replication.run()
        lock = s3.head_object(Bucket=REPLICA_BUCKET, Key=manifest.dump.key).get("ObjectLockMode", "no lock")
        print(f"    {len(copied)} objects copied to s3://{REPLICA_BUCKET} ({DR_REGION}), the archive's lock: {lock}")

    step(f"S3 replication (local stand-in) to {DR_REGION}", replicate)

    dr_server = step("a second PostgreSQL server: the DR region's", LocalPostgres(embedded_bin_dir()).start)
    try:
        target = ConnectionSpec.from_url(dr_server.url()).for_database(database)
        code = step(
            f"dbops restore --region {DR_REGION} --bucket {REPLICA_BUCKET} (the DR stack's restore state machine)",
            lambda: _dr_restore(target, database),
        )
        same = code == 0 and table_fingerprints(target) == fingerprints
        print(f"    every table on the DR server identical to the backed-up database: {'yes' if same else 'NO'}")
    finally:
        dr_server.destroy()
    return (
        f"deletion of a locked backup {'refused' if refused else 'NOT refused'}; "
        f"restore from the {DR_REGION} replica {'identical' if same else 'FAILED'}"
    )


def _dr_restore(target: ConnectionSpec, database: str) -> int:
    from dbops.cli import main as dbops_cli
    from local_stack.workflow import deploy_dr_restore_workflow

    assert target.password is not None
    url = f"postgresql://{target.user}:{target.password.get_secret_value()}@{target.host}:{target.port}/{database}"
    environment = {"DBOPS_BUCKET": REPLICA_BUCKET, "DBOPS_DATABASES": json.dumps([{"name": database, "url": url}])}
    aws.use_region(DR_REGION)
    try:
        arn = deploy_dr_restore_workflow(environment=environment, region=DR_REGION)
        logs = io.StringIO()
        with redirect_stdout(logs):
            code = dbops_cli(["restore", "--region", DR_REGION, "--bucket", REPLICA_BUCKET, "--state-machine-arn", arn])
    finally:
        aws.use_region(None)
    for line in logs.getvalue().splitlines():
        if line.startswith(("checked", "succeeded", "FAILED", "REFUSED")):
            print(f"    {line}")
    return code
