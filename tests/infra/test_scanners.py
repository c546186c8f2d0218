"""checkov and cfn-lint on the synthesized template: zero unacknowledged findings, every acknowledgement reasoned.

Both run offline from their own venv (requirements-scan.txt, `make scanners`; checkov pins a boto3 the functions'
cannot sit beside). Acknowledgements sit on the resources (infra/scanners.py).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import Synth

ROOT = Path(__file__).resolve().parents[2]
SCANNERS = Path(os.environ.get("DBOPS_SCANNERS_BIN", ROOT / ".venv-scan" / "bin"))
# nothing reaches the network: no platform key, no guideline or mapping download, no update check, no SCA
OFFLINE = {
    "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false",
    "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true",
    "BC_SKIP_MAPPING": "TRUE",
}
# what is acknowledged, and how often, in the test settings' template: nothing beyond these
ACKNOWLEDGED_CHECKOV = {
    "CKV_AWS_18": 1,  # the access-log bucket is not logged into itself
    "CKV_AWS_21": 1,  # nor versioned
    "CKV_AWS_27": 1,  # the dead-letter queue: SQS-managed SSE
    "CKV_AWS_111": 25,  # X-Ray, log delivery, VPC ENI actions on *: 23 function roles, 2 state machine roles
    "CKV_AWS_115": 23,  # reserved concurrency: every function
    "CKV_AWS_116": 19,  # no Lambda DLQ: the functions state machines invoke synchronously
    "CKV_AWS_173": 23,  # environment without secrets, Lambda's own key
}


def _tool(name: str) -> str:
    path = SCANNERS / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make scanners` (requirements-scan.txt)")
    return str(path)


@pytest.fixture(scope="module")
def template_file(synthesized: Synth, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scan") / "template.json"
    path.write_text(json.dumps(synthesized.json, indent=1))
    return path


def run_checkov(template_file: Path) -> dict[str, Any]:
    """checkov's results on one template, offline."""
    env = {k: v for k, v in os.environ.items() if k not in ("BC_API_KEY", "PRISMA_API_URL")}
    result = subprocess.run(
        [
            _tool("checkov"),
            "-f",
            str(template_file),
            "--framework",
            "cloudformation",
            "--output",
            "json",
            "--skip-download",
        ],
        cwd=template_file.parent,
        env={**env, **OFFLINE},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr  # 1: findings, reported below
    return json.loads(result.stdout)["results"]  # type: ignore[no-any-return]


def assert_cfn_lint_clean(template_file: Path) -> None:
    result = subprocess.run(
        [_tool("cfn-lint"), "--format", "json", str(template_file)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    findings = json.loads(result.stdout or "[]")
    assert [(f["Rule"]["Id"], f["Message"]) for f in findings] == [], result.stderr
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def checkov(template_file: Path) -> dict[str, Any]:
    return run_checkov(template_file)


def test_checkov_finds_nothing_unacknowledged(checkov: dict[str, Any]) -> None:
    failed = [(f["check_id"], f["resource"], f["check_name"]) for f in checkov["failed_checks"]]
    assert failed == []
    assert len(checkov["passed_checks"]) > 300  # it did scan the template


def test_every_checkov_skip_carries_its_reason(checkov: dict[str, Any]) -> None:
    skipped = checkov["skipped_checks"]
    for check in skipped:
        reason = check["check_result"].get("suppress_comment", "")
        assert len(reason.split()) >= 8, f"{check['resource']} {check['check_id']}: the reason is too thin: {reason!r}"
    assert dict(Counter(c["check_id"] for c in skipped)) == ACKNOWLEDGED_CHECKOV


def test_cfn_lint_finds_nothing_unacknowledged(template_file: Path) -> None:
    assert_cfn_lint_clean(template_file)


def test_every_cfn_lint_ignore_carries_its_reason(synthesized: Synth) -> None:
    ignored: Counter[str] = Counter()
    for name, resource in synthesized.json["Resources"].items():
        lint = resource.get("Metadata", {}).get("cfn-lint")
        if not lint:
            continue
        rules = lint["config"]["ignore_checks"]
        reasons = lint.get("reasons", {})
        assert sorted(reasons) == sorted(rules), f"{name}: every ignored rule needs its reason"
        for rule in rules:
            assert len(reasons[rule].split()) >= 8, f"{name} {rule}: the reason is too thin"
            ignored[rule] += 1
    # W3005 (DependsOn beside a GetAtt on the role): every function and both state machines
    assert dict(ignored) == {"W3005": 25}
