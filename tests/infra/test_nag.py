"""cdk-nag's AwsSolutions checks run at every synth: zero unacknowledged findings, every acknowledgment reasoned."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import Synth, settings_dict, validation_report


def _acknowledgments(synthesized: Synth) -> dict[str, dict[str, str]]:
    metadata = json.loads((synthesized.outdir / f"{synthesized.stack.stack_name}.metadata.json").read_text())
    found: dict[str, dict[str, str]] = {}
    for path, entries in metadata.items():
        for entry in entries:
            if entry["type"] == "aws:cdk:acknowledged-rules":
                found.setdefault(path, {}).update(entry["data"])
    return found


def test_synth_reports_no_finding_of_any_plugin(synthesized: Synth) -> None:
    report = validation_report(synthesized.outdir)
    violations = [
        (plugin["pluginName"], v["ruleName"], v["severity"])
        for plugin in report["pluginReports"]
        for v in plugin.get("violations", [])
    ]
    assert violations == []


def test_aws_solutions_checks_pass_on_the_synthesized_stack(synthesized: Synth) -> None:
    from cdk_nag import AwsSolutionsChecks

    report = AwsSolutionsChecks().validate_scope(synthesized.stack)
    assert [(v.rule_name, v.severity) for v in report.violations] == []
    assert report.success


def test_every_acknowledgment_carries_a_reason(synthesized: Synth) -> None:
    acknowledged = _acknowledgments(synthesized)
    nag = {
        (path, rule): reason
        for path, rules in acknowledged.items()
        for rule, reason in rules.items()
        if "AwsSolutions-" in rule
    }
    assert nag, "expected the acknowledged AwsSolutions findings to be recorded"
    for (path, rule), reason in nag.items():
        assert len(reason.split()) >= 8, f"{path} {rule}: the reason is too thin: {reason!r}"
    # what is acknowledged, and where: nothing beyond these
    rules = sorted({rule.split("::", 1)[-1].split("[")[0] for (_, rule) in nag})
    assert rules == [
        "AwsSolutions-ECS2",
        "AwsSolutions-IAM5",
        "AwsSolutions-L1",
        "AwsSolutions-S1",
        "AwsSolutions-SMG4",
        "AwsSolutions-SQS3",
    ]
    s1 = [path for (path, rule) in nag if rule.endswith("AwsSolutions-S1")]
    assert s1 == [f"/{synthesized.stack.stack_name}/Storage/AccessLogs"]


def test_an_unacknowledged_finding_stops_the_synth(tmp_path: Path) -> None:
    from aws_cdk import aws_sns as sns

    from infra.application import build_app
    from tests.infra.conftest import make_base_dir

    app, stack = build_app(
        {"dbops": settings_dict()},
        outdir=str(tmp_path / "cdk.out"),
        base_dir=make_base_dir(tmp_path),
        layers_build_dir=tmp_path / "none",
    )
    sns.Topic(stack, "UnencryptedPlainTextTopic")  # no TLS-only policy: AwsSolutions-SNS3
    with pytest.raises(RuntimeError, match=r"(?s)ValidationFailed.*AwsSolutions-SNS3"):
        app.synth()
    report: dict[str, Any] = validation_report(tmp_path / "cdk.out")
    (plugin,) = report["pluginReports"]
    assert plugin["pluginName"] == "AwsSolutions"
    assert {v["ruleName"] for v in plugin["violations"]} >= {"AwsSolutions-SNS3"}
    paths = {c["constructPath"] for v in plugin["violations"] for c in v["violatingConstructs"]}
    assert paths == {f"{stack.stack_name}/UnencryptedPlainTextTopic/Resource"}


def test_acknowledgments_match_when_the_account_and_region_are_concrete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With CDK_DEFAULT_ACCOUNT and CDK_DEFAULT_REGION set (the cdk CLI with credentials), the ARNs the stacks
    format carry the account and region themselves: the acknowledgements spell them so, and the synth (cdk-nag on
    the main and the DR stack) finds nothing unacknowledged."""
    from tests.infra.conftest import ACCOUNT, REGION, synth

    monkeypatch.setenv("CDK_DEFAULT_ACCOUNT", ACCOUNT)
    monkeypatch.setenv("CDK_DEFAULT_REGION", REGION)
    concrete = synth(tmp_path, settings_dict())  # an unacknowledged finding would stop it here

    assert concrete.stack.account == ACCOUNT and concrete.stack.replica_stack.account == ACCOUNT
    report = validation_report(concrete.outdir)
    assert [v["ruleName"] for plugin in report["pluginReports"] for v in plugin.get("violations", [])] == []
    rules = {rule.removeprefix("Annotation::") for rules in _acknowledgments(concrete).values() for rule in rules}
    executions = f"arn:<AWS::Partition>:states:{REGION}:{ACCOUNT}:execution:dbops-restore:*"
    assert f"AwsSolutions-IAM5[Resource::{executions}]" in rules
    assert f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:rds:{REGION}:{ACCOUNT}:db:dbops-pit-*]" in rules
    assert not any("<AWS::Region>:<AWS::AccountId>" in rule for rule in rules)
