"""`python app.py` synthesizes the shipped cdk.json offline, with no Docker and no AWS credentials."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_python_app_py_synthesizes_the_shipped_settings(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_")) and k not in ("DOCKER_HOST",)}
    env.update(CDK_OUTDIR=str(tmp_path), PATH="/usr/bin:/bin", JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20")
    done = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    template = json.loads((tmp_path / "dbops.template.json").read_text())
    types = [r["Type"] for r in template["Resources"].values()]
    # backup, health, maintenance, the 13 restore steps, the daily drop of expired copies and the sweep of
    # point-in-time restores' temporary instances (the database has an rds_instance_id), the 5 rehearsal steps
    assert types.count("AWS::Lambda::Function") == 3 + 13 + 1 + 1 + 5
    assert types.count("AWS::StepFunctions::StateMachine") == 2  # backup, restore
    assert "AWS::CloudWatch::Dashboard" in types
    report = json.loads((tmp_path / "validation-report.json").read_text())
    assert [v for p in report["pluginReports"] for v in p.get("violations", [])] == []


def test_a_settings_mistake_exits_2_with_the_settings_path(tmp_path: Path) -> None:
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    context["dbops"]["databases"][0]["secret_arn"] = "not-an-arn"
    env = dict(os.environ, CDK_OUTDIR=str(tmp_path), CDK_CONTEXT_JSON=json.dumps(context))
    done = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "dbops.databases.0.secret_arn" in done.stderr
    assert not (tmp_path / "dbops.template.json").exists()
