"""One Lambda function per handler, each with its own role granting only what that handler uses.

Every function: arm64 (configurable), the layers, X-Ray tracing, its own log group with retention, JSON logs,
and a place in the databases' VPC when they have one. EMF metrics go through the logs, so no role has
cloudwatch:PutMetricData.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from aws_cdk import Acknowledgment, Annotations, Duration, RemovalPolicy, Size, Stack, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from dbops import contract
from dbops.contract import (
    BACKUPS_PREFIX,
    DRILLS_PREFIX,
    HEALTH_PREFIX,
    METRICS_NAMESPACE,
    REHEARSALS_PREFIX,
    RESTORES_PREFIX,
    SERVICE_NAME,
)
from infra.constants import (
    BACKUP_SIZING,
    FUNCTION_ASSET_EXCLUDES,
    FUNCTIONS_DIR,
    HEALTH_SIZING,
    MAINTENANCE_SIZING,
    PG_BIN_DIR,
    RESTORE_STEP_EPHEMERAL_MB,
    RESTORE_STEP_SIZING,
    Sizing,
)
from infra.layers import RUNTIME, Layers, architecture
from infra.scanners import W3005_REASON, XRAY_POLICY_REASON, acknowledge_cfn_lint, acknowledge_checkov
from infra.settings import LOG_RETENTION_DAYS, StackSettings

RESTORE_PREFIXES = (BACKUPS_PREFIX, RESTORES_PREFIX, DRILLS_PREFIX)
S3_WRITE_ACTIONS = ("s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject")
S3_READ_ACTIONS = ("s3:GetObject",)
S3_TAG_ACTIONS = ("s3:GetObjectTagging", "s3:PutObjectTagging")  # dbops.backup.retention: which backups may expire
VPC_ENI_ACTIONS = (
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
)

# CDK's RetentionDays members are in the same order as CloudWatch's allowed values
LOG_RETENTION = dict(zip(LOG_RETENTION_DAYS, [m for m in logs.RetentionDays if m.name != "INFINITE"], strict=True))


@dataclass(frozen=True)
class BucketAccess:
    """Which keys of the backup bucket a function reads, writes, tags and lists (S3 key patterns, prefixes)."""

    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    tag: tuple[str, ...] = ()
    list_prefixes: tuple[str, ...] = ()

    @property
    def kms_actions(self) -> tuple[str, ...]:
        actions: list[str] = []
        if self.write:
            # SSE-KMS: new objects need a data key; completing a multipart upload decrypts it
            actions += ["kms:GenerateDataKey", "kms:Decrypt"]
        elif self.read:
            actions.append("kms:Decrypt")
        return tuple(actions)


@dataclass(frozen=True)
class FunctionSpec:
    construct_id: str
    handler: str
    description: str
    sizing: Sizing
    bucket: BucketAccess = BucketAccess()
    database_secrets: bool = True
    retry_attempts: int = 0
    ephemeral_storage_mb: int = 512
    environment: Mapping[str, str] = field(default_factory=dict)
    # which cdk.json `functions.<kind>` setting sizes it
    kind: Literal["backup", "health", "maintenance", "restore"] = "restore"
    # invoked asynchronously by an EventBridge schedule (else synchronously by a state machine): its failed
    # invokes go to the scheduled invokes' dead-letter queue
    scheduled: bool = False


BACKUP = FunctionSpec(
    construct_id="Backup",
    handler="handlers.backup.handler",
    description="dbops: pg_dump | zstd | S3 multipart, manifest last (nightly, predeploy, manual)",
    sizing=BACKUP_SIZING,
    # reads the catalog and tags backups for retention (dbops.backup.retention) after a backup
    bucket=BucketAccess(
        read=(f"{BACKUPS_PREFIX}*",),
        write=(f"{BACKUPS_PREFIX}*",),
        tag=(f"{BACKUPS_PREFIX}*",),
        list_prefixes=(BACKUPS_PREFIX,),
    ),
    retry_attempts=1,
    kind="backup",
)
HEALTH = FunctionSpec(
    construct_id="Health",
    handler="handlers.health.handler",
    description="dbops: health probes as EMF metrics, backup freshness from the catalog",
    sizing=HEALTH_SIZING,
    # reads the catalog (backup freshness); keeps the temp_files probe's counters under health/
    bucket=BucketAccess(
        read=(f"{BACKUPS_PREFIX}*", f"{HEALTH_PREFIX}*"),
        write=(f"{HEALTH_PREFIX}*",),
        list_prefixes=(BACKUPS_PREFIX, HEALTH_PREFIX),
    ),
    kind="health",
    scheduled=True,
)
MAINTENANCE = FunctionSpec(
    construct_id="Maintenance",
    handler="handlers.maintenance.handler",
    description="dbops: ANALYZE, VACUUM, REINDEX CONCURRENTLY, retention cleanup and archive",
    sizing=MAINTENANCE_SIZING,
    kind="maintenance",
    scheduled=True,
)


def restore_step_spec(
    step: str, environment: Mapping[str, str] | None = None, description: str | None = None, scheduled: bool = False
) -> FunctionSpec:
    """A restore step's function (`handlers.restore.<step>`): reads backups, writes safety backups and the
    restore and drill records."""
    name = "".join(part.capitalize() for part in step.split("_"))
    prefixes = RESTORE_PREFIXES
    return FunctionSpec(
        construct_id=f"Restore{name}",
        handler=f"handlers.restore.{step}",
        description=description or f"dbops: restore workflow step {step}",
        sizing=RESTORE_STEP_SIZING,
        bucket=BucketAccess(
            read=tuple(f"{p}*" for p in prefixes), write=tuple(f"{p}*" for p in prefixes), list_prefixes=prefixes
        ),
        ephemeral_storage_mb=RESTORE_STEP_EPHEMERAL_MB,
        environment=dict(environment or {}),
        scheduled=scheduled,
    )


def rehearsal_step_spec(step: str) -> FunctionSpec:
    """A rehearsal step's function (`handlers.rehearsal.<step>`): reads backups (the one it restores), reads and
    writes the rehearsal's files under rehearsals/."""
    name = "".join(part.capitalize() for part in step.split("_"))
    return FunctionSpec(
        construct_id=f"Rehearsal{name}",
        handler=f"handlers.rehearsal.{step}",
        description=f"dbops: migration rehearsal step {step}",
        sizing=RESTORE_STEP_SIZING,
        bucket=BucketAccess(
            read=(f"{BACKUPS_PREFIX}*", f"{REHEARSALS_PREFIX}*"),
            write=(f"{REHEARSALS_PREFIX}*",),
            list_prefixes=(BACKUPS_PREFIX,),
        ),
        ephemeral_storage_mb=RESTORE_STEP_EPHEMERAL_MB,
        environment={contract.ENV_WORK_DIR: "/tmp"},
    )


class Functions(Construct):
    """`backup`, `health`, `maintenance`; `add(spec)` and `restore_steps(names)` make more of the same kind."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: StackSettings,
        bucket: s3.IBucket,
        key: kms.IKey,
        layers: Layers,
        logs_key: kms.IKey | None = None,
        dead_letter_queue: sqs.IQueue | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.settings = settings
        self.bucket = bucket
        self.key = key
        self.layers = layers
        self.logs_key = logs_key
        self.dead_letter_queue = dead_letter_queue
        self.code = lambda_.Code.from_asset(str(FUNCTIONS_DIR), exclude=FUNCTION_ASSET_EXCLUDES)
        self.by_name: dict[str, lambda_.Function] = {}
        self.log_groups: dict[str, logs.LogGroup] = {}
        self._vpc, self._subnets, self._security_groups = self._placement()
        self.backup = self.add(BACKUP)
        # each database's own health thresholds and maintenance rules go to the one function that reads them
        self.health = self.add(
            replace(
                HEALTH,
                environment={contract.ENV_HEALTH_THRESHOLDS_BY_DATABASE: settings.health_thresholds_by_database_json()},
            )
        )
        self.maintenance = self.add(
            replace(
                MAINTENANCE,
                environment={contract.ENV_MAINTENANCE_BY_DATABASE: settings.maintenance_by_database_json()},
            )
        )

    def _placement(
        self,
    ) -> tuple[ec2.IVpc | None, ec2.SubnetSelection | None, list[ec2.ISecurityGroup] | None]:
        placement = self.settings.placement()
        if placement is None:
            return None, None, None
        vpc = ec2.Vpc.from_vpc_attributes(
            self, "DatabaseVpc", vpc_id=placement.vpc_id, availability_zones=Stack.of(self).availability_zones
        )
        subnets = [ec2.Subnet.from_subnet_id(self, f"Subnet{i}", s) for i, s in enumerate(placement.subnet_ids)]
        for subnet in subnets:
            Annotations.of(subnet).acknowledge_warning(
                "@aws-cdk/aws-ec2:noSubnetRouteTableId", "dbops only places functions in the subnets; no routes"
            )
        groups: list[ec2.ISecurityGroup] = [
            ec2.SecurityGroup.from_security_group_id(self, f"SecurityGroup{i}", g, mutable=False)
            for i, g in enumerate(placement.security_group_ids)
        ]
        return vpc, ec2.SubnetSelection(subnets=subnets), groups

    def restore_steps(
        self, steps: Iterable[str], environment: Mapping[str, str] | None = None
    ) -> dict[str, lambda_.Function]:
        """The restore workflow's step functions, keyed by handler name in handlers.restore."""
        return {step: self.add(restore_step_spec(step, environment)) for step in steps}

    def grant_restore_access(self, principal: iam.IGrantable) -> None:
        """What a restore step may do, for the Fargate task that stages large restores with the same code."""
        spec = restore_step_spec("stage")
        for statement in self._statements(spec, None, lambda_networking=False):
            principal.grant_principal.add_to_principal_policy(statement)
        for rule, reason in self.bucket_prefix_reasons(spec.bucket).items():
            Validations.of(principal).acknowledge(Acknowledgment(id=rule, reason=reason))  # type: ignore[arg-type]

    @property
    def vpc(self) -> ec2.IVpc | None:
        return self._vpc

    @property
    def subnets(self) -> ec2.SubnetSelection | None:
        return self._subnets

    @property
    def security_groups(self) -> list[ec2.ISecurityGroup] | None:
        return list(self._security_groups) if self._security_groups else None

    def add(self, spec: FunctionSpec) -> lambda_.Function:
        name = spec.construct_id
        log_group = logs.LogGroup(
            self,
            f"{name}Logs",
            log_group_name=f"/dbops/{self.settings.stack_name}/{name.lower()}",
            retention=LOG_RETENTION[self.settings.retention_days.logs],
            encryption_key=self.logs_key,
            removal_policy=RemovalPolicy.RETAIN,
        )
        role = iam.Role(
            self,
            f"{name}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"dbops {name} function: only what {spec.handler} uses",
        )
        for statement in self._statements(spec, log_group):
            role.add_to_policy(statement)
        function = lambda_.Function(
            self,
            name,
            description=spec.description,
            runtime=RUNTIME,
            architecture=architecture(self.settings.architecture),
            handler=spec.handler,
            code=self.code,
            layers=self.layers.all,
            memory_size=self.memory_mb(spec),
            timeout=Duration.seconds(spec.sizing.timeout_s),
            ephemeral_storage_size=Size.mebibytes(spec.ephemeral_storage_mb),
            retry_attempts=spec.retry_attempts,
            role=role,
            log_group=log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            application_log_level_v2=lambda_.ApplicationLogLevel.INFO,
            system_log_level_v2=lambda_.SystemLogLevel.WARN,
            tracing=lambda_.Tracing.ACTIVE,
            vpc=self._vpc,
            vpc_subnets=self._subnets,
            security_groups=self._security_groups,
            environment={**self.environment(), **spec.environment},
            dead_letter_queue=self.dead_letter_queue if spec.scheduled else None,
        )
        self._acknowledge(spec, function, role)
        self.by_name[name] = function
        self.log_groups[name] = log_group
        return function

    def memory_mb(self, spec: FunctionSpec) -> int:
        """cdk.json `functions.<kind>.memory_mb`, else dbops' own sizing."""
        configured: int | None = getattr(self.settings.functions, spec.kind).memory_mb
        return configured if configured is not None else spec.sizing.memory_mb

    def environment(self) -> dict[str, str]:
        """What dbops.settings.FunctionSettings reads, plus Powertools' names."""
        return {
            contract.ENV_BUCKET: self.bucket.bucket_name,
            contract.ENV_DATABASES: self.settings.functions_databases_json(),
            contract.ENV_PG_BIN: PG_BIN_DIR,
            contract.ENV_RETENTION_KEEP: str(self.settings.retention_days.keep_newest_verified),
            **self.settings.restore.environment(),
            contract.ENV_POWERTOOLS_SERVICE_NAME: SERVICE_NAME,
            contract.ENV_POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
        }

    def _statements(
        self, spec: FunctionSpec, log_group: logs.ILogGroup | None, lambda_networking: bool = True
    ) -> list[iam.PolicyStatement]:
        statements = []
        if log_group is not None:
            statements.append(
                iam.PolicyStatement(
                    sid="WriteOwnLogs",
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                    resources=[log_group.log_group_arn],
                )
            )
        access = spec.bucket
        if access.list_prefixes:
            statements.append(
                iam.PolicyStatement(
                    sid="ListBackups",
                    actions=["s3:ListBucket"],
                    resources=[self.bucket.bucket_arn],
                    conditions={"StringLike": {"s3:prefix": [f"{p}*" for p in access.list_prefixes]}},
                )
            )
        if access.read:
            statements.append(
                iam.PolicyStatement(
                    sid="ReadBackups",
                    actions=list(S3_READ_ACTIONS),
                    resources=[self.bucket.arn_for_objects(p) for p in access.read],
                )
            )
        if access.write:
            statements.append(
                iam.PolicyStatement(
                    sid="WriteBackups",
                    actions=list(S3_WRITE_ACTIONS),
                    resources=[self.bucket.arn_for_objects(p) for p in access.write],
                )
            )
        if access.tag:
            statements.append(
                iam.PolicyStatement(
                    sid="TagBackups",
                    actions=list(S3_TAG_ACTIONS),
                    resources=[self.bucket.arn_for_objects(p) for p in access.tag],
                )
            )
        if access.kms_actions:
            statements.append(
                iam.PolicyStatement(sid="BackupKey", actions=list(access.kms_actions), resources=[self.key.key_arn])
            )
        if spec.database_secrets:
            statements.append(
                iam.PolicyStatement(
                    sid="ReadDatabaseSecrets",
                    actions=["secretsmanager:GetSecretValue"],
                    resources=[db.secret_arn for db in self.settings.databases],
                )
            )
            secret_keys = sorted({db.secret_kms_key_arn for db in self.settings.databases if db.secret_kms_key_arn})
            if secret_keys:
                statements.append(
                    iam.PolicyStatement(
                        sid="DecryptDatabaseSecrets",
                        actions=["kms:Decrypt"],
                        resources=secret_keys,
                        conditions={
                            "StringEquals": {"kms:ViaService": f"secretsmanager.{Stack.of(self).region}.amazonaws.com"}
                        },
                    )
                )
        if self._vpc is not None and lambda_networking:
            statements.append(
                iam.PolicyStatement(sid="VpcNetworkInterfaces", actions=list(VPC_ENI_ACTIONS), resources=["*"])
            )
        return statements

    def bucket_prefix_reasons(self, access: BucketAccess) -> dict[str, str]:
        """cdk-nag acknowledgements for the bucket prefixes a role is granted, with the reason."""
        stack = Stack.of(self)
        bucket_id = stack.resolve(stack.get_logical_id(self.bucket.node.default_child))  # type: ignore[arg-type]
        return {
            f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/{pattern}]": (
                f"Objects under {pattern} are keyed <kind>/<database>/<id>... with ids made at run time: the grant "
                "is that prefix of the one bucket, nothing else in it."
            )
            for pattern in sorted({*access.read, *access.write, *access.tag})
        }

    def _acknowledge(self, spec: FunctionSpec, function: lambda_.Function, role: iam.Role) -> None:
        reasons = {
            "AwsSolutions-IAM5[Resource::*]": (
                "X-Ray PutTraceSegments/PutTelemetryRecords (tracing) and the Lambda VPC network-interface actions "
                "do not support resource-level permissions."
            ),
        }
        reasons.update(self.bucket_prefix_reasons(spec.bucket))
        for rule, reason in reasons.items():
            Validations.of(role).acknowledge(Acknowledgment(id=rule, reason=reason))
        self._acknowledge_scanners(spec, function, role)
        Validations.of(function).acknowledge(
            Acknowledgment(
                id="AwsSolutions-L1",
                reason=(
                    "Pinned to python3.12: the Python layer's compiled wheels (pydantic-core, psycopg-binary, "
                    "zstandard) are built for it by layers/builder.py; upgrade both together."
                ),
            )
        )

    def _acknowledge_scanners(self, spec: FunctionSpec, function: lambda_.Function, role: iam.Role) -> None:
        """checkov and cfn-lint: what does not apply to a dbops function, each with its reason."""
        reasons = {
            "CKV_AWS_115": (
                "Its callers bound its concurrency (one scheduled invoke per period; the backup Map's MaxConcurrency; "
                "one restore step at a time); reserved concurrency would carve it out of the account's pool and "
                "fails to deploy on accounts with the default low limit."
            ),
            "CKV_AWS_173": (
                "The environment holds names, ARNs and thresholds, never a secret (credentials are read from Secrets "
                "Manager at run time); Lambda encrypts it at rest with its own key."
            ),
        }
        if not (spec.scheduled and self.dead_letter_queue is not None):
            reasons["CKV_AWS_116"] = (
                "Invoked synchronously by a state machine (RequestResponse), which catches and reports its failures; "
                "a Lambda dead-letter queue only receives asynchronous invokes."
            )
        if self._vpc is None:
            reasons["CKV_AWS_117"] = (
                "The databases configured in cdk.json have no VPC placement (publicly reachable endpoints); the "
                "functions join the databases' VPC whenever one is configured."
            )
        acknowledge_checkov(function, reasons)
        acknowledge_cfn_lint(function, {"W3005": W3005_REASON})
        policy = role.node.try_find_child("DefaultPolicy")
        if policy is not None:
            acknowledge_checkov(policy, {"CKV_AWS_111": XRAY_POLICY_REASON})
