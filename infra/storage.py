"""The backup bucket and its key: encrypted, TLS-only, versioned, logged, and expiring by backup kind (nightly and
predeploy backups never below the newest verified ones: see dbops.backup.retention; nightly ones by class too).

With `backup_lock` the bucket is created with S3 Object Lock enabled and no default retention: dbops writes each
backup object with its own retention (a nightly backup for the lock's days, a predeploy one for its kind's age, a
weekly or monthly one lengthened to its class's age), and whatever must change (verification records, health
counters, retention ledgers, restore, drill and rehearsal records) is written unlocked. A default retention would
lock all of that too, every version of the health counters included, and one age for every kind."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Aws, Duration, RemovalPolicy, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from dbops.contract import HEALTH_PREFIX, RESTORE_PROGRESS_PREFIX, RETENTION_LEDGER_PREFIX
from infra.retention_settings import BackupLockSettings, RetentionDays
from infra.scanners import acknowledge_checkov


class BackupStorage(Construct):
    """`key` (KMS, rotated yearly), `bucket` (the backups) and `access_logs` (the bucket's server access logs)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        retention: RetentionDays,
        lock: BackupLockSettings | None = None,
        bucket_name: str | None = None,
        key_alias: str | None = None,
        purpose: str = "the database backups",
    ) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "BackupKey",
            description=f"dbops: encrypts {purpose}",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
            alias=key_alias,
        )
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            # S3 server access logging delivers only to SSE-S3 buckets
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            versioned=False,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-access-logs",
                    expiration=Duration.days(retention.access_logs),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        Validations.of(self.access_logs).acknowledge(
            Acknowledgment(
                id="AwsSolutions-S1",
                reason="This is the access-log bucket itself; logging it into itself would log its own deliveries.",
            )
        )
        acknowledge_checkov(
            self.access_logs,
            {
                "CKV_AWS_18": "This is the access-log bucket itself; logging it into itself would log its own "
                "deliveries.",
                "CKV_AWS_21": "Server access logs are written once by S3 log delivery and expire by the lifecycle "
                "rule; versions of them would keep nothing worth having.",
            },
        )
        self.bucket = s3.Bucket(
            self,
            "Backups",
            bucket_name=bucket_name,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            versioned=True,
            object_lock_enabled=True if lock is not None else None,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="backups-bucket/",
            lifecycle_rules=lifecycle_rules(retention),
            removal_policy=RemovalPolicy.RETAIN,
        )


RESTORE_PROGRESS_DAYS = 7
# a retention ledger not rewritten for a week is read in full anyway (dbops.backup.retention_ledger): one left a month
# (its database no longer backed up, or no predeploy backup since) goes
RETENTION_LEDGER_DAYS = 30


def lifecycle_rules(retention: RetentionDays) -> list[s3.LifecycleRule]:
    """One expiry per backup kind (nightly and predeploy: only objects dbops tagged expirable, which it does once
    enough newer backups verified); bucket-wide: stale multipart uploads and old versions go."""
    rules = [
        s3.LifecycleRule(
            id="all-abort-multipart-expire-noncurrent",
            abort_incomplete_multipart_upload_after=Duration.days(1),
            noncurrent_version_expiration=Duration.days(retention.noncurrent_versions),
            expired_object_delete_marker=True,
        ),
        # the health function rewrites its counters and last report every run (~288 versions a day each): the
        # replaced versions go after a day instead of the bucket's noncurrent_versions days
        s3.LifecycleRule(
            id="health-expire-noncurrent",
            prefix=HEALTH_PREFIX,
            noncurrent_version_expiration=Duration.days(1),
        ),
        # a restore's Stage rewrites its progress every 2 s while it runs, and nothing reads it after: a week
        s3.LifecycleRule(
            id="restore-progress-expire",
            prefix=RESTORE_PROGRESS_PREFIX,
            expiration=Duration.days(RESTORE_PROGRESS_DAYS),
            noncurrent_version_expiration=Duration.days(1),
        ),
        # every retention pass rewrites its kind and database's ledger (unlocked, like the verification records): the
        # replaced versions go after a day
        s3.LifecycleRule(
            id="retention-ledger-expire",
            prefix=RETENTION_LEDGER_PREFIX,
            expiration=Duration.days(RETENTION_LEDGER_DAYS),
            noncurrent_version_expiration=Duration.days(1),
        ),
    ]
    for expiry in retention.backup_expiries():
        rules.append(
            s3.LifecycleRule(
                id=expiry.rule_id,
                prefix=expiry.prefix,
                tag_filters=dict(expiry.tags) or None,
                expiration=Duration.days(expiry.days),
            )
        )
    return rules


def logs_key(scope: Construct, construct_id: str) -> kms.Key:
    """The key (rotated yearly) encrypting every dbops log group: CloudWatch Logs in this account and region may use
    it for this account's log groups only."""
    key = kms.Key(
        scope,
        construct_id,
        description="dbops: encrypts the functions', state machines' and task's log groups",
        enable_key_rotation=True,
        removal_policy=RemovalPolicy.RETAIN,
    )
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid="CloudWatchLogsEncrypt",
            principals=[iam.ServicePrincipal(f"logs.{Aws.REGION}.amazonaws.com")],
            actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
            resources=["*"],
            conditions={
                "ArnLike": {
                    "kms:EncryptionContext:aws:logs:arn": (
                        f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:*"
                    )
                }
            },
        )
    )
    return key
