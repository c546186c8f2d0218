"""`dbops rehearse --deployed`: the same rehearsal run by the deployed stack (the restore state machine's mode
rehearse: the application's migration image on Fargate), started and followed from a deploy pipeline.

The command after -- (if any) replaces the migration container's configured command; the report (with --json, the
result) is read from the bucket when the judgement is done. Exit 0 pass, 1 fail (or the rehearsal could not be
completed), 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from typing import Any

from dbops.aws import s3stream, stepfunctions
from dbops.cli.restores import find_state_machine
from dbops.errors import ConfigError


def request_of(args: argparse.Namespace) -> dict[str, Any]:
    """The execution's input: only what the operator gave; the rest is the database's rehearsal settings."""
    request: dict[str, Any] = {"mode": "rehearse", "backup": args.backup}
    optional = {
        "database": args.database_name,
        "kind": args.kind,
        "command": args.migration or None,
        "downgrade": args.downgrade,
        "skip_downgrade": True if args.no_downgrade else None,
        "max_lock": args.max_lock,
        "max_duration": args.max_duration,
    }
    request.update({k: v for k, v in optional.items() if v is not None})
    return request


def _judged(execution: str) -> dict[str, Any] | None:
    """JudgeRehearsal's output (the state with the result's key), if the execution got that far."""
    for event in reversed(stepfunctions.history(execution)):
        details = event.get("stateExitedEventDetails")
        if details and details.get("name") == "JudgeRehearsal":
            return dict(json.loads(details.get("output") or "{}"))
    return None


def run_deployed(args: argparse.Namespace) -> int:
    if args.from_database:
        raise ConfigError("--deployed rehearses on a backup: it takes no --from-database")
    machine = find_state_machine(args.state_machine_arn)
    name = f"rehearse-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    execution = stepfunctions.start(machine, name, json.dumps(request_of(args)), "restore")
    say = sys.stderr if args.json else sys.stdout  # with --json, stdout holds the result alone
    print(f"started {name}", file=say, flush=True)
    description = stepfunctions.follow(
        execution, lambda kind, state: print(f"  {'->' if kind == 'entered' else '!!'} {state}", file=say, flush=True)
    )
    judged = _judged(execution)
    if judged and args.bucket:
        key = str(judged["result_key" if args.json else "report_key"])
        print(s3stream.get_text(args.bucket, key) or f"no result at s3://{args.bucket}/{key}")
    if description["status"] != "SUCCEEDED":
        cause = description.get("cause", description["status"])
        print(f"ERROR: the rehearsal could not be completed: {cause}"[:4000], file=say)
        return 1
    output = json.loads(description.get("output") or "{}")
    passed = output.get("verdict") == "pass"
    print("PASS" if passed else f"FAIL: {output.get('summary', '')}"[:4000], file=say)
    return 0 if passed else 1
