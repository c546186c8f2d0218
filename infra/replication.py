"""A second copy of the backups in another region (cdk.json `replication`, README "Second copy in another region").

ReplicaStack   the DR stack (`<stack_name>-dr`, in the DR region and account): the replica bucket made like the
               backup bucket (versioned, Object Lock when backup_lock is set, the same lifecycle rules, since S3
               does not replicate expirations), its own KMS key (alias `alias/<stack_name>-replica`) and access logs
Replication    in the main stack: the role S3 assumes and the backup bucket's replication rule for `backups/`
               (SSE-KMS objects re-encrypted with the replica key, tags replicated, delete markers not, replication
               time control and metrics on)

The main stack names the replica bucket and key by deterministic names (bucket name and key alias from the stack
name, the DR account and region), not by cross-region references: `cross_region_references=True` needs both
stacks' regions concrete at synth time and deploys a custom-resource Lambda function and SSM parameters to carry
the values, where names known in advance need nothing and synthesize with no AWS account.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import Aws, CfnOutput, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from dbops.contract import BACKUPS_PREFIX
from infra.constants import LAYERS_BUILD_DIR
from infra.disaster_recovery import DisasterRestore
from infra.replication_settings import RULE_ID, ReplicationSettings
from infra.scanners import acknowledge_nag
from infra.settings import StackSettings
from infra.storage import BackupStorage

REPLICATION_MINUTES = 15  # S3 Replication Time Control: the only threshold S3 offers
REPLICATE = ["s3:ReplicateObject", "s3:ReplicateTags"]
OWNER_OVERRIDE = "s3:ObjectOwnerOverrideToBucketOwner"


def replicated_objects(bucket_arn: str) -> str:
    return f"{bucket_arn}/{BACKUPS_PREFIX}*"


class ReplicaStack(Stack):
    """The DR stack: `storage.bucket` (the replica bucket), `storage.key` (its key), exported by name and ARN; with
    `replication.restore`, `restores` (infra/disaster_recovery.py: the restore state machine over the replica)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: StackSettings,
        source_account: str | None = None,
        certs_dir: Path | None = None,
        layers_build_dir: Path = LAYERS_BUILD_DIR,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("description", "dbops: the second copy of the backups, in another region")
        super().__init__(scope, construct_id, **kwargs)
        replication = settings.replication
        assert replication is not None
        self.storage = BackupStorage(
            self,
            "Storage",
            retention=settings.retention_days,
            lock=settings.backup_lock,
            bucket_name=replication.bucket_name_for(settings.stack_name, Aws.ACCOUNT_ID),
            key_alias=replication.key_alias(settings.stack_name),
            purpose="the replicas of the database backups",
        )
        if replication.account is not None and source_account is not None and source_account != replication.account:
            self._admit_source(replication, settings.stack_name, source_account)
        bucket, key = self.storage.bucket, self.storage.key
        prefix = construct_id
        CfnOutput(self, "ReplicaBucketName", value=bucket.bucket_name, export_name=f"{prefix}-ReplicaBucketName")
        CfnOutput(self, "ReplicaBucketArn", value=bucket.bucket_arn, export_name=f"{prefix}-ReplicaBucketArn")
        CfnOutput(self, "ReplicaKeyArn", value=key.key_arn, export_name=f"{prefix}-ReplicaKeyArn")
        self.restores: DisasterRestore | None = None
        disaster = settings.disaster_settings()
        if disaster is not None:
            assert replication.restore is not None and certs_dir is not None
            self.restores = DisasterRestore(
                self,
                "Restores",
                settings=disaster,
                rpo_alarm_hours=replication.restore.rpo_alarm_hours,
                bucket=bucket,
                key=key,
                certs_dir=certs_dir,
                layers_build_dir=layers_build_dir,
            )

    def _admit_source(self, replication: ReplicationSettings, stack_name: str, source_account: str) -> None:
        """Cross-account: the source account's replication role (by its ARN, so it need not exist yet) may write
        replicas, hand them to this account and encrypt them with the replica key."""
        role_arn = f"arn:{Aws.PARTITION}:iam::{source_account}:role/{replication.role_name(stack_name)}"
        source = iam.AccountPrincipal(source_account)
        only_the_role = {"ArnEquals": {"aws:PrincipalArn": role_arn}}
        bucket = self.storage.bucket
        bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="ReplicasFromSource",
                principals=[source],
                actions=[*REPLICATE, OWNER_OVERRIDE],
                resources=[replicated_objects(bucket.bucket_arn)],
                conditions=only_the_role,
            )
        )
        bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="SourceChecksVersioning",
                principals=[source],
                actions=["s3:GetBucketVersioning"],
                resources=[bucket.bucket_arn],
                conditions=only_the_role,
            )
        )
        self.storage.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="SourceEncryptsReplicas",
                principals=[source],
                actions=["kms:Encrypt", "kms:GenerateDataKey"],
                resources=["*"],
                conditions=only_the_role,
            )
        )


class Replication(Construct):
    """The backup bucket's replication rule to the DR stack's bucket, and `role`, the role S3 replicates as."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: ReplicationSettings,
        stack_name: str,
        bucket: s3.Bucket,
        key: kms.IKey,
        locked: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        cross_account = settings.account is not None
        account = settings.account or Aws.ACCOUNT_ID
        self.rule_id = RULE_ID
        self.destination_bucket_name = settings.bucket_name_for(stack_name, account)
        self.destination_bucket_arn = f"arn:{Aws.PARTITION}:s3:::{self.destination_bucket_name}"
        self.replica_key = f"arn:{Aws.PARTITION}:kms:{settings.region}:{account}:{settings.key_alias(stack_name)}"
        self.role = iam.Role(
            self,
            "Role",
            role_name=settings.role_name(stack_name),
            assumed_by=iam.ServicePrincipal("s3.amazonaws.com"),
            description="dbops: S3 replicates the backups to the DR region as this role",
        )
        self._grant(bucket, key, settings, account, stack_name, cross_account=cross_account, locked=locked)
        destination = s3.CfnBucket.ReplicationDestinationProperty(
            bucket=self.destination_bucket_arn,
            account=settings.account,
            access_control_translation=s3.CfnBucket.AccessControlTranslationProperty(owner="Destination")
            if cross_account
            else None,
            encryption_configuration=s3.CfnBucket.EncryptionConfigurationProperty(replica_kms_key_id=self.replica_key),
            metrics=s3.CfnBucket.MetricsProperty(
                status="Enabled", event_threshold=s3.CfnBucket.ReplicationTimeValueProperty(minutes=REPLICATION_MINUTES)
            ),
            replication_time=s3.CfnBucket.ReplicationTimeProperty(
                status="Enabled", time=s3.CfnBucket.ReplicationTimeValueProperty(minutes=REPLICATION_MINUTES)
            ),
        )
        rule = s3.CfnBucket.ReplicationRuleProperty(
            id=RULE_ID,
            status="Enabled",
            priority=0,
            filter=s3.CfnBucket.ReplicationRuleFilterProperty(prefix=BACKUPS_PREFIX),
            delete_marker_replication=s3.CfnBucket.DeleteMarkerReplicationProperty(status="Disabled"),
            source_selection_criteria=s3.CfnBucket.SourceSelectionCriteriaProperty(
                sse_kms_encrypted_objects=s3.CfnBucket.SseKmsEncryptedObjectsProperty(status="Enabled")
            ),
            destination=destination,
        )
        cfn_bucket = bucket.node.default_child
        assert isinstance(cfn_bucket, s3.CfnBucket)
        cfn_bucket.replication_configuration = s3.CfnBucket.ReplicationConfigurationProperty(
            role=self.role.role_arn, rules=[rule]
        )

    def _grant(
        self,
        bucket: s3.Bucket,
        key: kms.IKey,
        settings: ReplicationSettings,
        account: str,
        stack_name: str,
        *,
        cross_account: bool,
        locked: bool,
    ) -> None:
        """Read the backups' versions (their tags, and their locks when locked) and the replication rule, write
        replicas under backups/ of the one destination bucket, decrypt with the backup key through S3 in this
        region and encrypt with the replica key (named by its alias) through S3 in the DR region. No deletes."""
        reads = ["s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging"]
        if locked:
            reads += ["s3:GetObjectRetention", "s3:GetObjectLegalHold"]
        statements = [
            iam.PolicyStatement(
                sid="ReadReplicationRule",
                actions=["s3:GetReplicationConfiguration", "s3:ListBucket"],
                resources=[bucket.bucket_arn],
            ),
            iam.PolicyStatement(
                sid="ReadBackupVersions", actions=reads, resources=[replicated_objects(bucket.bucket_arn)]
            ),
            iam.PolicyStatement(
                sid="WriteReplicas",
                actions=[*REPLICATE, *([OWNER_OVERRIDE] if cross_account else [])],
                resources=[replicated_objects(self.destination_bucket_arn)],
            ),
            iam.PolicyStatement(
                sid="DecryptBackups",
                actions=["kms:Decrypt"],
                resources=[key.key_arn],
                conditions={
                    "StringEquals": {"kms:ViaService": f"s3.{Aws.REGION}.amazonaws.com"},
                    "StringLike": {"kms:EncryptionContext:aws:s3:arn": [bucket.bucket_arn, f"{bucket.bucket_arn}/*"]},
                },
            ),
            iam.PolicyStatement(
                sid="EncryptReplicas",
                actions=["kms:Encrypt", "kms:GenerateDataKey"],
                resources=[f"arn:{Aws.PARTITION}:kms:{settings.region}:{account}:key/*"],
                conditions={
                    "StringEquals": {"kms:ViaService": f"s3.{settings.region}.amazonaws.com"},
                    "ForAnyValue:StringEquals": {"kms:ResourceAliases": settings.key_alias(stack_name)},
                    "StringLike": {
                        "kms:EncryptionContext:aws:s3:arn": [
                            self.destination_bucket_arn,
                            f"{self.destination_bucket_arn}/*",
                        ]
                    },
                },
            ),
        ]
        for statement in statements:
            self.role.add_to_policy(statement)
        stack = Stack.of(self)
        bucket_id = stack.resolve(stack.get_logical_id(bucket.node.default_child))  # type: ignore[arg-type]
        shown = settings.account or "<AWS::AccountId>"  # how cdk-nag renders the account in a resource
        destination = f"arn:<AWS::Partition>:s3:::{settings.bucket_name_for(stack_name, shown)}"
        every_backup = (
            "Every object under backups/ is replicated, each kind, database and backup id made at run time: the "
            "grant is that prefix of the one bucket, nothing else in it."
        )
        acknowledge_nag(
            self.role,
            {
                f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/{BACKUPS_PREFIX}*]": every_backup,
                f"AwsSolutions-IAM5[Resource::{destination}/{BACKUPS_PREFIX}*]": every_backup,
                f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:kms:{settings.region}:{shown}:key/*]": (
                    "The replica key is made by the DR stack, so its id is not known here: the statement admits only "
                    "the key carrying the replica alias (kms:ResourceAliases), used by S3 in the DR region for the "
                    "replica bucket (kms:ViaService, encryption context)."
                ),
            },
        )
