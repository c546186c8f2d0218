"""Build the CDK app from settings: the same code for `python app.py`, `npx cdk synth` and the tests.

cdk-nag's AwsSolutions checks run at every synth; an unacknowledged finding stops the synth.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_cdk import App, Environment, Validations
from cdk_nag import AwsSolutionsChecks

from infra.constants import CONTEXT_KEY, LAYERS_BUILD_DIR, ROOT
from infra.replication import ReplicaStack
from infra.settings import SettingsError, StackSettings, load_settings
from infra.stack import DbopsStack

CDK_JSON = ROOT / "cdk.json"
# feature flags the stack relies on (also in cdk.json for the cdk CLI)
FEATURE_FLAGS = {
    # the access-log bucket admits S3 log delivery by bucket policy, not by ACL (it enforces bucket-owner objects)
    "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True,
}


def cdk_json_context(path: Path = CDK_JSON) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()).get("context", {}))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"cannot read {path}: {exc}") from None


def build_app(
    context: Mapping[str, Any] | None = None,
    *,
    outdir: str | None = None,
    base_dir: Path = ROOT,
    layers_build_dir: Path = LAYERS_BUILD_DIR,
    restore_steps: tuple[str, ...] | None = None,
) -> tuple[App, DbopsStack]:
    """The app and its one stack. Without `context`: the cdk CLI's (CDK_CONTEXT_JSON) or else cdk.json's."""
    if context is None and "CDK_CONTEXT_JSON" not in os.environ:
        context = cdk_json_context()
    outdir = outdir or os.environ.get("CDK_OUTDIR") or str(ROOT / "cdk.out")
    app = App(context={**FEATURE_FLAGS, **(context or {})}, outdir=outdir)
    settings, certs_dir = load_settings(app.node.try_get_context(CONTEXT_KEY), base_dir)
    account, region = os.environ.get("CDK_DEFAULT_ACCOUNT"), os.environ.get("CDK_DEFAULT_REGION")
    extra: dict[str, Any] = {}
    if restore_steps is not None:
        extra["restore_steps"] = restore_steps
    replica = _replica_stack(app, settings, account, region, certs_dir, layers_build_dir)
    stack = DbopsStack(
        app,
        settings.stack_name,
        settings=settings,
        certs_dir=certs_dir,
        layers_build_dir=layers_build_dir,
        env=Environment(account=account, region=region) if account and region else None,
        **extra,
    )
    stack.replica_stack = replica
    if replica is not None:
        stack.add_stack_dependency(replica, "S3 checks the replica bucket exists when the replication rule is set")
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack


def _replica_stack(
    app: App,
    settings: StackSettings,
    account: str | None,
    region: str | None,
    certs_dir: Path,
    layers_build_dir: Path,
) -> ReplicaStack | None:
    """The DR stack (cdk.json `replication`), in the DR region and account; None without replication."""
    replication = settings.replication
    if replication is None:
        return None
    if replication.region == region:
        raise SettingsError(f"replication.region is the stack's own region ({region}): name another region")
    if replication.account not in (None, account) and not account:
        # the DR stack admits the source account's replication role by its ARN: it needs that account's id
        raise SettingsError(
            "replication.account is another account: synthesize with the source account known "
            "(the cdk CLI with credentials, or CDK_DEFAULT_ACCOUNT and CDK_DEFAULT_REGION)"
        )
    return ReplicaStack(
        app,
        replication.stack_name(settings.stack_name),
        settings=settings,
        source_account=account,
        certs_dir=certs_dir,
        layers_build_dir=layers_build_dir,
        env=Environment(account=replication.account or account, region=replication.region),
    )
