"""One synth of the whole app per test session (settings exercising every option), shared by the infra tests."""

from __future__ import annotations

import atexit
import copy
import functools
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

ACCOUNT = "123456789012"
REGION = "eu-west-1"
DR_REGION = "us-west-2"
VPC_ID = "vpc-0a1b2c3d4e5f60718"
SUBNETS = ["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002", "subnet-0a1b2c3d4e5f60003"]
GROUPS = ["sg-0a1b2c3d4e5f60001", "sg-0a1b2c3d4e5f60002"]
# the DR region's database server (replication.restore)
DR_SECRET = f"arn:aws:secretsmanager:{DR_REGION}:{ACCOUNT}:secret:dbops/dr/sprint_reports_v2-XyZ123"
DR_VPC_ID = "vpc-0f1e2d3c4b5a69788"
DR_SUBNETS = ["subnet-0f1e2d3c4b5a60001", "subnet-0f1e2d3c4b5a60002"]
DR_GROUPS = ["sg-0f1e2d3c4b5a60001"]
SECRET_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0a1b2c3d-0000-4000-8000-0a1b2c3d4e5f"


def secret_arn(name: str) -> str:
    return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:dbops/{name}-AbCdEf"


# the guide's retention rules, as cdk.json gives them to the Sprint Reports database
GUIDE_RULES = [
    {
        "name": "report snapshots older than 6 months, baselines kept",
        "table": "report_snapshots",
        "timestamp_column": "created_at",
        "age": "6 months",
        "keep": "is_baseline",
        "mode": "delete",
        "batch_size": 5000,
    },
    {
        "name": "sprints ended more than 2 years ago, with their issues and snapshots",
        "table": "sprints",
        "timestamp_column": "ends_on",
        "age": "2 years",
        "mode": "archive",
        "batch_size": 50,
    },
]
# billing's own: a rule naming its own table, health and alarm thresholds, Fargate backups
BILLING_RULE = {
    "name": "audit events older than 30 days",
    "schema": "audit",
    "table": "audit_events",
    "timestamp_column": "recorded_at",
    "age": "30 days",
    "mode": "delete",
}


def settings_dict() -> dict[str, Any]:
    """Two databases in one VPC, verify-full with a CA bundle, overridden schedules and retention (weekly and monthly
    classes, a compliance Object Lock), email alarms, a second copy in us-west-2,
    three backups at once; each database with its own maintenance rules, billing with its own health and alarm
    thresholds and backup runner."""
    return {
        "stack_name": "dbops-test",
        "architecture": "arm64",
        "databases": [
            {
                "name": "sprint_reports_v2",
                "secret_arn": secret_arn("sprint_reports_v2"),
                "rds_instance_id": "sprint-reports-prod",
                "sslmode": "verify-full",
                "ca_bundle": "test-ca.pem",
                "vpc": {"vpc_id": VPC_ID, "subnet_ids": SUBNETS[:2], "security_group_ids": GROUPS[:1]},
                "app_hook": {"type": "ssm", "parameter": "/sprint-reports/maintenance-mode"},
                "restore_checks": ["SELECT count(*) > 0 FROM users"],
                "maintenance": {"rules": copy.deepcopy(GUIDE_RULES)},
                "rehearsal": {
                    "image": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/sprint-reports-migrations:42",
                    "command": ["alembic", "-c", "/app/alembic.ini", "upgrade", "head"],
                    "url_env": "SQLALCHEMY_URL",
                    "environment": {"APP_ENV": "rehearsal"},
                    "max_lock": "3s",
                    "max_duration": "20m",
                },
            },
            {
                "name": "billing",
                "secret_arn": secret_arn("billing"),
                "rds_cluster_id": "billing-aurora",
                "secret_kms_key_arn": SECRET_KEY,
                "sslmode": "verify-full",
                "ca_bundle": "test-ca.pem",
                "vpc": {"vpc_id": VPC_ID, "subnet_ids": SUBNETS[1:], "security_group_ids": GROUPS},
                "maintenance": {"rules": [dict(BILLING_RULE)], "lock_timeout_s": 2},
                "health_thresholds": {"connections_warn_percent": 70, "connections_critical_percent": 85},
                "alarms": {"thresholds": {"connections_used_percent": 80, "backup_age_hours": 30}},
                "backup": {"runner": "fargate", "format": "parallel", "max_streams": 6},
            },
        ],
        "schedules": {"vacuum": "cron(15 1 * * ? *)", "archive": "off"},
        "retention_days": {
            "predeploy": 120,
            "prerestore": 21,
            "manual": 400,
            "keep_newest_verified": 5,
            "noncurrent_versions": 10,
            "logs": 30,
            "weekly": 90,
            "monthly": 365,
        },
        "backup_lock": {"mode": "compliance", "days": 30},
        "alarms": {"email": "dba@example.com"},
        "replication": {
            "region": DR_REGION,
            "lag_alarm_minutes": 45,
            "restore": {
                "databases": [
                    {
                        "name": "sprint_reports_v2",
                        "secret_arn": DR_SECRET,
                        "sslmode": "verify-full",
                        "ca_bundle": "test-ca.pem",
                        "vpc": {"vpc_id": DR_VPC_ID, "subnet_ids": DR_SUBNETS, "security_group_ids": DR_GROUPS},
                    }
                ],
                "drill_schedule": "cron(0 9 ? * SUN *)",
                "rpo_alarm_hours": 36,
            },
        },
        "backup": {"max_concurrency": 3},
        "restore": {"lock_timeout": "150ms", "lock_wait_budget": "30s", "max_pause": "2s"},
        "restore_task_image": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/dbops-restore:1.0",
    }


@dataclass
class Synth:
    app: Any
    stack: Any
    template: Any  # aws_cdk.assertions.Template
    outdir: Path
    settings: dict[str, Any]

    @functools.cached_property
    def _json_text(self) -> str:
        """The template as JSON text, read from CDK once: each to_json() is a round trip to its node process
        (0.1 s); parsing the text again is 3 ms."""
        return json.dumps(self.template.to_json())

    @property
    def json(self) -> dict[str, Any]:
        """The template, a fresh copy on each read (as to_json() gives): a test may change what it is given."""
        return json.loads(self._json_text)  # type: ignore[no-any-return]

    def resources(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.json["Resources"].items() if v["Type"] == kind}

    def logical_id(self, construct: Any) -> str:
        return str(self.stack.resolve(self.stack.get_logical_id(construct.node.default_child)))


def make_base_dir(root: Path) -> Path:
    certs = root / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    (certs / "test-ca.pem").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    return root


def synth(root: Path, settings: dict[str, Any], **build_kwargs: Any) -> Synth:
    from aws_cdk.assertions import Template

    from infra.application import build_app

    outdir = root / "cdk.out"
    app, stack = build_app(
        {"dbops": copy.deepcopy(settings)},
        outdir=str(outdir),
        base_dir=make_base_dir(root),
        layers_build_dir=build_kwargs.pop("layers_build_dir", root / "layers-not-built"),
        **build_kwargs,
    )
    app.synth()
    return Synth(app=app, stack=stack, template=Template.from_stack(stack), outdir=outdir, settings=settings)


@functools.cache
def default_synth() -> Synth:
    """The app with settings_dict(), synthesized once per process: the infra tests' `synthesized` and the workflow
    tests' alarm checks (tests/workflow/alarms.py) share it (a synth is some 6 s of CPU)."""
    root = Path(tempfile.mkdtemp(prefix="dbops-synth-"))
    atexit.register(shutil.rmtree, root, True)
    return synth(root, settings_dict())


@pytest.fixture(scope="session")
def synthesized() -> Iterator[Synth]:
    yield default_synth()


def validation_report(outdir: Path) -> dict[str, Any]:
    return json.loads((outdir / "validation-report.json").read_text())  # type: ignore[no-any-return]


def all_states(states: dict[str, Any]) -> dict[str, Any]:
    """The states of a state machine and of its Parallel states' branches, by name."""
    found = dict(states)
    for state in states.values():
        for branch in state.get("Branches", []):
            found |= all_states(branch["States"])
    return found
