"""Acknowledging cdk-nag, checkov and cfn-lint findings on the resource itself, each with its reason.

`make test` runs both on the synthesized template (tests/infra/test_scanners.py): zero unacknowledged findings.
checkov reads `Metadata.checkov.skip: [{id, comment}]`; cfn-lint reads `Metadata.cfn-lint.config.ignore_checks`
and has no place for a reason, so the reasons sit beside it in `Metadata.cfn-lint.reasons: {rule: reason}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import Acknowledgment, CfnResource, Stack, Token, Validations
from constructs import IConstruct

# cfn-lint, on every Lambda function and state machine CDK synthesizes
W3005_REASON = (
    "CDK renders DependsOn on the role (and its policy, so the resource starts with its permissions) beside "
    "the GetAtt on the role: the redundant DependsOn changes nothing."
)
# checkov, on the IAM policy of every function and state machine
XRAY_POLICY_REASON = (
    "The write actions on * are X-Ray PutTraceSegments/PutTelemetryRecords, CloudWatch Logs' log delivery "
    "actions and the Lambda VPC network-interface actions, none of which support resource-level permissions."
)


def _resource(construct: IConstruct) -> CfnResource:
    """The L1 resource of an L2 construct (its default child), or the L1 itself."""
    if isinstance(construct, CfnResource):
        return construct
    child = construct.node.default_child
    if not isinstance(child, CfnResource):
        raise TypeError(f"{construct.node.path} has no CloudFormation resource to acknowledge a finding on")
    return child


def _checked(reasons: Mapping[str, str]) -> None:
    for rule, reason in reasons.items():
        if len(reason.split()) < 8:
            raise ValueError(f"{rule}: an acknowledgement needs its reason, not {reason!r}")


def acknowledge_checkov(construct: IConstruct, reasons: Mapping[str, str]) -> None:
    """checkov skips these checks on this resource; the reason is the skip's comment."""
    _checked(reasons)
    resource = _resource(construct)
    metadata: dict[str, Any] = resource.get_metadata("checkov") or {}
    skips = {s["id"]: s["comment"] for s in metadata.get("skip", [])}
    skips.update(reasons)
    resource.add_metadata("checkov", {"skip": [{"id": k, "comment": v} for k, v in sorted(skips.items())]})


def acknowledge_cfn_lint(construct: IConstruct, reasons: Mapping[str, str]) -> None:
    """cfn-lint ignores these rules on this resource; the reasons beside them."""
    _checked(reasons)
    resource = _resource(construct)
    metadata: dict[str, Any] = resource.get_metadata("cfn-lint") or {}
    known = {**metadata.get("reasons", {}), **reasons}
    resource.add_metadata(
        "cfn-lint", {"config": {"ignore_checks": sorted(known)}, "reasons": dict(sorted(known.items()))}
    )


def acknowledge_nag(construct: IConstruct | None, reasons: Mapping[str, str]) -> None:
    """cdk-nag accepts these findings on this construct (and below it), each with its reason."""
    for rule, reason in reasons.items():
        Validations.of(construct).acknowledge(Acknowledgment(id=rule, reason=reason))  # type: ignore[arg-type]


def nag_arn_prefix(scope: IConstruct, service: str) -> str:
    """`arn:<partition>:<service>:<region>:<account>` as cdk-nag prints an ARN the stack formats (format_arn), for
    an acknowledgement to match: the stack's region and account where they are concrete (CDK_DEFAULT_ACCOUNT and
    CDK_DEFAULT_REGION, the cdk CLI with credentials), else their pseudo parameters. (An ARN built on
    Aws.ACCOUNT_ID or Aws.REGION stays a pseudo parameter either way.)"""
    stack = Stack.of(scope)
    region = "<AWS::Region>" if Token.is_unresolved(stack.region) else stack.region
    account = "<AWS::AccountId>" if Token.is_unresolved(stack.account) else stack.account
    return f"arn:<AWS::Partition>:{service}:{region}:{account}"
