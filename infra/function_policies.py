"""The IAM statements of a function's role: its own logs, bucket prefixes, keys, secrets, VPC and application hooks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3

from infra.database_settings import DatabaseSettings
from infra.function_specs import BucketAccess, FunctionSpec

S3_WRITE_ACTIONS = ("s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject")
# writing a backup with its Object Lock retention, and lengthening it (never s3:BypassGovernanceRetention)
S3_LOCK_ACTIONS = ("s3:PutObjectRetention", "s3:GetObjectRetention")
S3_READ_ACTIONS = ("s3:GetObject",)
S3_TAG_ACTIONS = ("s3:GetObjectTagging", "s3:PutObjectTagging")  # dbops.backup.retention: which backups may expire
VPC_ENI_ACTIONS = (
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
)


def bucket_statements(
    bucket: s3.IBucket, key: kms.IKey, access: BucketAccess, sids: Mapping[str, str] | None = None
) -> list[iam.PolicyStatement]:
    """Listing, reading, writing, tagging and locking exactly the granted prefixes, and the backup key's actions for
    them (`sids`: other statement ids, for a principal that has these already for other prefixes)."""
    sids = sids or {}
    statements = []
    if access.list_prefixes:
        statements.append(
            iam.PolicyStatement(
                sid=sids.get("ListBackups", "ListBackups"),
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{p}*" for p in access.list_prefixes]}},
            )
        )
    for sid, actions, patterns in (
        ("ReadBackups", S3_READ_ACTIONS, access.read),
        ("WriteBackups", S3_WRITE_ACTIONS, access.write),
        ("TagBackups", S3_TAG_ACTIONS, access.tag),
        ("LockBackups", S3_LOCK_ACTIONS, access.lock),
    ):
        if patterns:
            statements.append(
                iam.PolicyStatement(
                    sid=sids.get(sid, sid),
                    actions=list(actions),
                    resources=[bucket.arn_for_objects(p) for p in patterns],
                )
            )
    if access.kms_actions:
        statements.append(
            iam.PolicyStatement(sid="BackupKey", actions=list(access.kms_actions), resources=[key.key_arn])
        )
    return statements


def secret_statements(stack: Stack, databases: Sequence[DatabaseSettings]) -> list[iam.PolicyStatement]:
    """Reading the databases' secrets, and decrypting them through Secrets Manager when a customer key does."""
    statements = [
        iam.PolicyStatement(
            sid="ReadDatabaseSecrets",
            actions=["secretsmanager:GetSecretValue"],
            resources=[db.secret_arn for db in databases],
        )
    ]
    secret_keys = sorted({db.secret_kms_key_arn for db in databases if db.secret_kms_key_arn})
    if secret_keys:
        statements.append(
            iam.PolicyStatement(
                sid="DecryptDatabaseSecrets",
                actions=["kms:Decrypt"],
                resources=secret_keys,
                conditions={"StringEquals": {"kms:ViaService": f"secretsmanager.{stack.region}.amazonaws.com"}},
            )
        )
    return statements


def function_statements(
    spec: FunctionSpec,
    *,
    bucket: s3.IBucket,
    key: kms.IKey,
    databases: Sequence[DatabaseSettings],
    log_group: logs.ILogGroup | None,
    vpc_networking: bool,
) -> list[iam.PolicyStatement]:
    """Everything a function of this spec may do (its own log group's when it has one; the Lambda VPC actions when
    it runs in the databases' VPC)."""
    statements = []
    if log_group is not None:
        statements.append(
            iam.PolicyStatement(
                sid="WriteOwnLogs",
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[log_group.log_group_arn],
            )
        )
    statements += bucket_statements(bucket, key, spec.bucket)
    if spec.database_secrets:
        statements += secret_statements(Stack.of(bucket), databases)
    if vpc_networking:
        statements.append(
            iam.PolicyStatement(sid="VpcNetworkInterfaces", actions=list(VPC_ENI_ACTIONS), resources=["*"])
        )
    return statements


def app_hook_statements(stack: Stack, databases: Sequence[DatabaseSettings]) -> list[iam.PolicyStatement]:
    """Writing exactly the configured maintenance-mode parameters and event buses (stopping, starting the app)."""
    resources: dict[str, list[str]] = {"ssm": [], "eventbridge": []}
    for db in databases:
        hook = db.app_hook
        if hook is None:
            continue
        if hook.type == "ssm":
            name = (hook.parameter or "").lstrip("/")
            resources["ssm"].append(stack.format_arn(service="ssm", resource="parameter", resource_name=name))
        else:
            resources["eventbridge"].append(
                stack.format_arn(service="events", resource="event-bus", resource_name=hook.event_bus)
            )
    statements = []
    if resources["ssm"]:
        statements.append(
            iam.PolicyStatement(
                sid="ApplicationMaintenanceMode", actions=["ssm:PutParameter"], resources=resources["ssm"]
            )
        )
    if resources["eventbridge"]:
        statements.append(
            iam.PolicyStatement(
                sid="ApplicationEvents", actions=["events:PutEvents"], resources=resources["eventbridge"]
            )
        )
    return statements


def bucket_prefix_reasons(bucket: s3.IBucket, access: BucketAccess) -> dict[str, str]:
    """cdk-nag acknowledgements for the bucket prefixes a role is granted, with the reason."""
    stack = Stack.of(bucket)
    bucket_id = stack.resolve(stack.get_logical_id(bucket.node.default_child))  # type: ignore[arg-type]
    return {
        f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/{pattern}]": (
            f"Objects under {pattern} are keyed <kind>/<database>/<id>... with ids made at run time: the grant "
            "is that prefix of the one bucket, nothing else in it."
        )
        for pattern in sorted({*access.read, *access.write, *access.tag, *access.lock})
    }
