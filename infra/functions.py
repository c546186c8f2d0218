"""One Lambda function per handler, each with its own role granting only what that handler uses.

Every function: arm64 (configurable), the layers, X-Ray tracing, its own log group with retention, JSON logs,
and a place in the databases' VPC when they have one. EMF metrics go through the logs, so no role has
cloudwatch:PutMetricData.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

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
from dbops.contract import BACKUPS_PREFIX, METRICS_NAMESPACE, RETENTION_LEDGER_PREFIX, SERVICE_NAME
from infra.constants import FUNCTION_ASSET_EXCLUDES, FUNCTIONS_DIR, PG_BIN_DIR
from infra.function_policies import bucket_prefix_reasons, bucket_statements, function_statements
from infra.function_specs import BACKUP, HEALTH, MAINTENANCE, BucketAccess, FunctionSpec, restore_step_spec
from infra.layers import RUNTIME, Layers, architecture
from infra.retention_settings import LOG_RETENTION_DAYS
from infra.scanners import W3005_REASON, XRAY_POLICY_REASON, acknowledge_cfn_lint, acknowledge_checkov, acknowledge_nag
from infra.settings import StackSettings

# CDK's RetentionDays members are in the same order as CloudWatch's allowed values
LOG_RETENTION = dict(zip(LOG_RETENTION_DAYS, [m for m in logs.RetentionDays if m.name != "INFINITE"], strict=True))


class Functions(Construct):
    """`backup`, `health`, `maintenance` (unless `restores_only`: the DR stack's); `add(spec)` and
    `restore_steps(names)` make more of the same kind."""

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
        restores_only: bool = False,
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
        if restores_only:
            return
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
        acknowledge_nag(principal, bucket_prefix_reasons(self.bucket, spec.bucket))  # type: ignore[arg-type]

    def grant_backup_access(self, principal: iam.IGrantable) -> None:
        """What a backup in the Fargate task may do besides a restore step's: write (and lock) backups of every
        kind and tag its database's backups for retention (keeping its retention ledger), as the Backup function
        does, and put its metrics (a task's awslogs output is not read as EMF) by PutMetricData, in dbops' namespace
        only."""
        every_kind = (f"{BACKUPS_PREFIX}*",)
        ledger = (f"{RETENTION_LEDGER_PREFIX}*",)  # what retention saw of the tags (dbops.backup.retention_ledger)
        access = BucketAccess(
            read=ledger,
            write=(*every_kind, *ledger),
            tag=every_kind,
            lock=every_kind,
            list_prefixes=(RETENTION_LEDGER_PREFIX,),
        )
        sids = {
            "ListBackups": "ListRetentionLedger",
            "ReadBackups": "ReadRetentionLedger",
            "WriteBackups": "WriteBackupsOfEveryKind",
            "LockBackups": "LockBackupsOfEveryKind",
        }
        for statement in bucket_statements(self.bucket, self.key, access, sids):
            if statement.sid != "BackupKey":  # the restore step's grant has the key's actions already
                principal.grant_principal.add_to_principal_policy(statement)
        acknowledge_nag(principal, bucket_prefix_reasons(self.bucket, BucketAccess(read=ledger)))  # type: ignore[arg-type]
        principal.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                sid="PutDbopsMetrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": METRICS_NAMESPACE}},
            )
        )
        acknowledge_nag(
            principal,  # type: ignore[arg-type]
            {
                "AwsSolutions-IAM5[Resource::*]": "cloudwatch:PutMetricData has no resource-level permissions; the "
                "grant is limited to dbops' metrics namespace by its condition."
            },
        )

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
            **self.settings.retention_days.function_environment(self.settings.backup_lock),
            **self.settings.restore.environment(),
            contract.ENV_POWERTOOLS_SERVICE_NAME: SERVICE_NAME,
            contract.ENV_POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
        }

    def _statements(
        self, spec: FunctionSpec, log_group: logs.ILogGroup | None, lambda_networking: bool = True
    ) -> list[iam.PolicyStatement]:
        return function_statements(
            spec,
            bucket=self.bucket,
            key=self.key,
            databases=self.settings.databases,
            log_group=log_group,
            vpc_networking=self._vpc is not None and lambda_networking,
        )

    def _acknowledge(self, spec: FunctionSpec, function: lambda_.Function, role: iam.Role) -> None:
        reasons = {
            "AwsSolutions-IAM5[Resource::*]": (
                "X-Ray PutTraceSegments/PutTelemetryRecords (tracing) and the Lambda VPC network-interface actions "
                "do not support resource-level permissions."
            ),
        }
        reasons.update(bucket_prefix_reasons(self.bucket, spec.bucket))
        acknowledge_nag(role, reasons)
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
