"""The rehearsal task of each database with `rehearsal` settings: the application's migration image and dbops'
watcher in one Fargate task, and the secret that gives both the scratch database's URL.

    watcher    dbops' image (restore_task_image), `python -m handlers.rehearsal_watch`; not essential; HEALTHY once
               its first sample is taken; on SIGTERM (the task stopping) it writes its observations to the bucket
    migration  the application's image and command (overridden per run: the upgrade, then the downgrade);
               essential; starts when the watcher is HEALTHY; its exit ends the task

Neither gets a password in the RunTask request: ECS reads the URL from the database's rehearsal secret (encrypted
with the backup key) when the task starts, into the migration's `url_env` and the watcher's DBOPS_REHEARSAL_URL.
The task role may only write the watcher's observations (rehearsals/ in the bucket).
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from dbops import contract
from dbops.contract import MIGRATION_CONTAINER, REHEARSALS_PREFIX
from infra.rehearsal_settings import DatabaseRehearsal
from infra.state_machines import acknowledge_image_pulls, logical_id

WATCHER_CONTAINER = "watcher"


class RehearsalTask(Construct):
    """One database's rehearsal task definition and secret (see the module's docstring)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        database: str,
        settings: DatabaseRehearsal,
        secret_name: str,
        migration_image: ecs.ContainerImage,
        watcher_image: ecs.ContainerImage,
        watcher_environment: dict[str, str],
        cluster: ecs.ICluster,
        bucket: s3.IBucket,
        key: kms.IKey,
        cpu_architecture: ecs.CpuArchitecture = ecs.CpuArchitecture.ARM64,
        security_groups: Sequence[ec2.ISecurityGroup] | None = None,
        subnets: ec2.SubnetSelection | None = None,
        logs_key: kms.IKey | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.database = database
        self.cluster = cluster
        self.security_groups = list(security_groups or [])
        self.subnets = subnets
        self.secret = secretsmanager.Secret(
            self,
            "Secret",
            secret_name=secret_name,
            description=f"dbops: the scratch database URL of {database}'s running rehearsal (empty between them)",
            encryption_key=key,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "TaskDefinition",
            cpu=settings.cpu,
            memory_limit_mib=settings.memory_mib,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=cpu_architecture, operating_system_family=ecs.OperatingSystemFamily.LINUX
            ),
        )
        log_group = logs.LogGroup(self, "Logs", retention=logs.RetentionDays.ONE_MONTH, encryption_key=logs_key)
        url = ecs.Secret.from_secrets_manager(self.secret, "url")
        self.watcher = self.task_definition.add_container(
            WATCHER_CONTAINER,
            image=watcher_image,
            command=["python", "-m", "handlers.rehearsal_watch"],
            essential=False,
            environment=watcher_environment,
            secrets={contract.ENV_REHEARSAL_URL: url},
            health_check=ecs.HealthCheck(
                command=["CMD-SHELL", f'test -f "${{TMPDIR:-/tmp}}/{contract.REHEARSAL_READY_FILE}"'],
                interval=Duration.seconds(5),
                timeout=Duration.seconds(2),
                retries=10,
                start_period=Duration.seconds(10),
            ),
            stop_timeout=Duration.seconds(60),
            logging=ecs.LogDrivers.aws_logs(stream_prefix=f"rehearsal-{WATCHER_CONTAINER}", log_group=log_group),
        )
        self.migration = self.task_definition.add_container(
            MIGRATION_CONTAINER,
            image=migration_image,
            command=settings.command,
            essential=True,
            environment=dict(settings.environment),
            secrets={settings.url_env: url},
            working_directory=settings.working_directory,
            logging=ecs.LogDrivers.aws_logs(stream_prefix=f"rehearsal-{MIGRATION_CONTAINER}", log_group=log_group),
        )
        self.migration.add_container_dependencies(
            ecs.ContainerDependency(container=self.watcher, condition=ecs.ContainerDependencyCondition.HEALTHY)
        )
        task_role = self.task_definition.task_role
        task_role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="WriteObservations",
                actions=["s3:PutObject"],
                resources=[bucket.arn_for_objects(f"{REHEARSALS_PREFIX}{database}/*")],
            )
        )
        task_role.add_to_principal_policy(
            iam.PolicyStatement(sid="BackupKey", actions=["kms:GenerateDataKey"], resources=[key.key_arn])
        )
        Validations.of(task_role).acknowledge(
            Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::<{logical_id(bucket)}.Arn>/{REHEARSALS_PREFIX}{database}/*]",  # type: ignore[arg-type]
                reason="The watcher writes each run's observations under rehearsals/<database>/<rehearsal id>/, "
                "an id made at run time.",
            )
        )
        acknowledge_image_pulls(self.task_definition)
        Validations.of(self.task_definition).acknowledge(
            Acknowledgment(
                id="AwsSolutions-ECS2",
                reason="The environment holds names and settings, never a secret: the URL comes from Secrets "
                "Manager through the task definition's secrets.",
            )
        )
        Validations.of(self.secret).acknowledge(
            Acknowledgment(
                id="AwsSolutions-SMG4",
                reason="Not a long-lived credential: each rehearsal writes a temporary role's URL, valid until its "
                "deadline, and empties it when done; the role is dropped.",
            )
        )
