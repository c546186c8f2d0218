"""Point-in-time IAM: the health probes' RDS reads, the restore steps' RDS restores, and the temporary copies' sweep."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from dbops.contract import PIT_INSTANCE_PREFIX, PIT_PURPOSE, PIT_PURPOSE_TAG
from infra.constants import HEALTH_SIZING
from infra.database_settings import DatabaseSettings
from infra.function_specs import FunctionSpec
from infra.functions import Functions
from infra.scanners import acknowledge_nag, nag_arn_prefix
from infra.state_machines import logical_id

COPIES_REASON = (
    "Temporary copies are named dbops-pit-<restore id> at run time; deleting is limited to copies tagged as "
    "dbops' temporary ones."
)


class PointInTimeAccess(Construct):
    """What the functions may do on the databases' RDS instances and Aurora clusters (no resources of its own)."""

    def __init__(self, scope: Construct, construct_id: str, *, databases: Sequence[DatabaseSettings]) -> None:
        super().__init__(scope, construct_id)
        self.databases = list(databases)

    def _rds_arn(self, resource: str, name: str) -> str:
        return Stack.of(self).format_arn(
            service="rds", resource=resource, resource_name=name, arn_format=ArnFormat.COLON_RESOURCE_NAME
        )

    def grant_readiness(self, health: lambda_.Function) -> None:
        """The health probes point_in_time and rds_metrics read the databases' instances and clusters (retention,
        restorable time, allocated storage) and their AWS/RDS CloudWatch metrics."""
        dbs = self.databases
        for sid, action, resource, ids in (
            ("DescribeInstances", "rds:DescribeDBInstances", "db", [db.rds_instance_id for db in dbs]),
            ("DescribeClusters", "rds:DescribeDBClusters", "cluster", [db.rds_cluster_id for db in dbs]),
        ):
            arns = [self._rds_arn(resource, i) for i in ids if i]
            if arns:
                health.add_to_role_policy(iam.PolicyStatement(sid=sid, actions=[action], resources=arns))
        if any(db.on_rds for db in dbs):
            health.add_to_role_policy(
                iam.PolicyStatement(
                    sid="ReadRdsMetrics",
                    actions=["cloudwatch:GetMetricStatistics", "rds:DescribeDBEngineVersions"],
                    resources=["*"],
                )
            )
            acknowledge_nag(
                health.role,
                {
                    "AwsSolutions-IAM5[Resource::*]": "X-Ray tracing, cloudwatch:GetMetricStatistics (the RDS "
                    "metrics of the databases' instances) and rds:DescribeDBEngineVersions (the versions RDS offers) "
                    "have no resource-level permissions."
                },
            )

    def _delete_statement(self, clusters: bool) -> iam.PolicyStatement:
        """Deleting dbops' temporary copies only: named dbops-pit-*, tagged as dbops' temporary ones."""
        temporary = self._temporary(clusters)
        return iam.PolicyStatement(
            sid="DeleteTemporaryCopies",
            actions=["rds:DeleteDBInstance", *(["rds:DeleteDBCluster"] if clusters else [])],
            resources=temporary,
            conditions={"StringEquals": {f"aws:ResourceTag/{PIT_PURPOSE_TAG}": PIT_PURPOSE}},
        )

    def _temporary(self, clusters: bool) -> list[str]:
        temporary = [self._rds_arn("db", f"{PIT_INSTANCE_PREFIX}*")]
        if clusters:
            temporary.append(self._rds_arn("cluster", f"{PIT_INSTANCE_PREFIX}*"))
        return temporary

    def grant_restores(self, restore_functions: Mapping[str, lambda_.Function]) -> iam.PolicyStatement:
        """Restores as of a moment: the steps may restore the databases' RDS instances (Aurora clusters) into
        dbops-pit-* copies, and delete only copies tagged as dbops' temporary ones. Returns the delete statement."""
        dbs = self.databases
        instances = [self._rds_arn("db", db.rds_instance_id) for db in dbs if db.rds_instance_id]
        clusters = [self._rds_arn("cluster", db.rds_cluster_id) for db in dbs if db.rds_cluster_id]
        temporary = self._temporary(bool(clusters))
        describe_actions = ["rds:DescribeDBInstances", *(["rds:DescribeDBClusters"] if clusters else [])]
        # an Aurora copy gets an instance of the source writer's class: the writer is read by its name
        described = [self._rds_arn("db", "*")] if clusters else instances
        describe = iam.PolicyStatement(
            sid="DescribeSources", actions=describe_actions, resources=[*described, *clusters, *temporary]
        )
        delete = self._delete_statement(bool(clusters))
        restore_actions = ["rds:AddTagsToResource"]
        if instances:
            restore_actions.append("rds:RestoreDBInstanceToPointInTime")
        if clusters:
            restore_actions += ["rds:RestoreDBClusterToPointInTime", "rds:CreateDBInstance"]
        groups = ["subgrp", "pg", "og", *(["cluster-pg"] if clusters else [])]
        restore = iam.PolicyStatement(
            sid="RestoreToPointInTime",
            actions=sorted(restore_actions),
            resources=[*instances, *clusters, *temporary, *(self._rds_arn(g, "*") for g in groups)],
        )
        grants = {
            "validate": [describe],
            "restore_to_point_in_time": [describe, restore],
            "wait_for_instance": [describe],
            "dump_point_in_time": [describe, delete],
            "rollback": [describe, delete],
            "finish": [describe, delete],
        }
        for step, statements in grants.items():
            for statement in statements:
                restore_functions[step].add_to_role_policy(statement)
        rds_arn = nag_arn_prefix(self, "rds")
        reasons = {
            f"AwsSolutions-IAM5[Resource::{rds_arn}:db:{PIT_INSTANCE_PREFIX}*]": COPIES_REASON,
            f"AwsSolutions-IAM5[Resource::{rds_arn}:cluster:{PIT_INSTANCE_PREFIX}*]": COPIES_REASON,
            f"AwsSolutions-IAM5[Resource::{rds_arn}:db:*]": (
                "Describing only: an Aurora copy's instance takes the class of the source cluster's writer, an "
                "instance found by name at run time."
            ),
            **{
                f"AwsSolutions-IAM5[Resource::{rds_arn}:{kind}:*]": (
                    "The restore names the source's own subnet, parameter and option groups, read at run time; the "
                    "action is limited to restoring the configured sources into dbops-pit-* copies."
                )
                for kind in groups
            },
        }
        for step in grants:
            acknowledge_nag(restore_functions[step].role, reasons)
        return delete

    def add_sweep(
        self, functions: Functions, state_machine: sfn.StateMachine, delete: iam.PolicyStatement
    ) -> lambda_.Function:
        """The function that deletes the temporary copies no running restore needs (what an execution left)."""
        sweep = functions.add(
            FunctionSpec(
                construct_id="TemporaryInstanceSweep",
                handler="handlers.restore.sweep_temporary_instances",
                description="dbops: delete point-in-time restores' temporary instances no running restore needs",
                sizing=HEALTH_SIZING,
                database_secrets=False,
                scheduled=True,
            )
        )
        sweep.add_to_role_policy(
            iam.PolicyStatement(
                sid="ListCopies", actions=["rds:DescribeDBInstances", "rds:DescribeDBClusters"], resources=["*"]
            )
        )
        sweep.add_to_role_policy(delete)
        sweep.add_to_role_policy(
            iam.PolicyStatement(
                sid="ReadRestoreExecutions",
                actions=["states:DescribeExecution"],
                resources=[
                    Stack.of(self).format_arn(
                        service="states",
                        resource="execution",
                        resource_name=f"{state_machine.state_machine_name}:*",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            )
        )
        rds_arn = nag_arn_prefix(self, "rds")
        acknowledge_nag(
            sweep.role,
            {
                "AwsSolutions-IAM5[Resource::*]": "Listing every DB instance and cluster (to find dbops' temporary "
                "copies by tag) has no resource-level form.",
                f"AwsSolutions-IAM5[Resource::{rds_arn}:db:{PIT_INSTANCE_PREFIX}*]": COPIES_REASON,
                f"AwsSolutions-IAM5[Resource::{rds_arn}:cluster:{PIT_INSTANCE_PREFIX}*]": COPIES_REASON,
                f"AwsSolutions-IAM5[Resource::{nag_arn_prefix(self, 'states')}:execution:"
                f"<{logical_id(state_machine)}.Name>:*]": "Any execution of the restore state machine: the one that "
                "ended is named by the event, the daily sweep reads each temporary instance's own.",
            },
        )
        return sweep
