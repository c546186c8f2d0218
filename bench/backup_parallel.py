"""Backup fan-out benchmark: the synthesized backup state machine (a Map over the databases, one Backup invoke each)
backing up N small databases, against the same databases backed up one after another by the same handler, in one
run, alternating, best of N.

    PYTHONPATH=functions:. .venv/bin/python -m bench.backup_parallel [--databases 12] [--scale 0.05] [--concurrency 4]

Both sides run the Backup Lambda handler in this process (the state machine's invokes are dispatched to it, as in
the tests), against one local PostgreSQL and an in-process moto server; each round's backups are deleted after it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid

from bench.common import sample_server
from dbops import aws
from dbops.aws import s3stream
from dbops.aws.stepfunctions import follow
from dbops.backup import catalog
from dbops.postgres.connection import ConnectionSpec
from local_stack.aws import LocalAws
from local_stack.lambda_runtime import LocalLambdaContext


def _url(spec: ConnectionSpec) -> str:
    assert spec.password is not None
    return f"postgresql://{spec.user}:{spec.password.get_secret_value()}@{spec.host}:{spec.port}/{spec.dbname}"


def _one_after_another(names: list[str]) -> float:
    from handlers.backup import handler  # the same function the state machine invokes

    t0 = time.perf_counter()
    for name in names:
        handler({"kind": "manual", "database": name}, LocalLambdaContext(function_name="dbops-backup"))
    return time.perf_counter() - t0


def _state_machine(machine: str) -> float:
    t0 = time.perf_counter()
    execution = aws.client("stepfunctions").start_execution(
        stateMachineArn=machine, name=f"bench-{uuid.uuid4().hex[:12]}", input=json.dumps({"kind": "manual"})
    )["executionArn"]
    description = follow(execution, lambda kind, name: None, poll_s=0.05)
    elapsed = time.perf_counter() - t0
    if description["status"] != "SUCCEEDED":
        raise SystemExit(f"backup execution {description['status']}: {description.get('cause')}")
    return elapsed


def _clear(bucket: str, expected: int) -> None:
    """Every round must have committed one backup per database; then they go, so rounds start alike."""
    entries = catalog.list_backups(bucket, kind="manual")
    if len(entries) != expected:
        raise SystemExit(f"expected {expected} committed backups, found {len(entries)}")
    for key in s3stream.list_keys(bucket, catalog.ROOT):
        s3stream.delete_object(bucket, key)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--databases", type=int, default=12)
    parser.add_argument("--scale", type=float, default=0.05, help="sample scale per database (0.05: ~5 MB)")
    parser.add_argument("--concurrency", type=int, default=4, help="the Map's MaxConcurrency")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    names = [f"db{i:02d}" for i in range(args.databases)]
    with LocalAws(), sample_server(dict.fromkeys(names, args.scale)) as (_pg, specs):
        from local_stack.workflow import deploy_backup_workflow  # synthesizes with CDK

        bucket = f"dbops-bench-{uuid.uuid4().hex[:8]}"
        aws.client("s3").create_bucket(Bucket=bucket)
        os.environ["DBOPS_BUCKET"] = bucket
        os.environ["DBOPS_DATABASES"] = json.dumps([{"name": n, "url": _url(specs[n])} for n in names])
        os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "1")
        machine = deploy_backup_workflow(names, max_concurrency=args.concurrency, name="dbops-backup-bench")
        sides = {
            "one after another": lambda: _one_after_another(names),
            "state machine (Map)": lambda: _state_machine(machine),
        }
        for side in sides.values():  # warm-up: imports, first connections, CDK synth caches
            side()
            _clear(bucket, len(names))
        times: dict[str, list[float]] = {name: [] for name in sides}
        for i in range(args.repeat):
            order = list(sides) if i % 2 == 0 else list(reversed(sides))
            for name in order:
                times[name].append(sides[name]())
                _clear(bucket, len(names))
                print(f"round {i + 1}: {name:<22} {times[name][-1]:6.2f} s", flush=True)
        best = {name: min(t) for name, t in times.items()}
        print(
            f"\n{args.databases} databases at scale {args.scale}, "
            f"MaxConcurrency {args.concurrency}, best of {args.repeat}"
        )
        for name, seconds in best.items():
            print(f"  {name:<22} {seconds:6.2f} s")
        print(
            f"  ratio one after another / state machine: {best['one after another'] / best['state machine (Map)']:.2f}x"
        )


if __name__ == "__main__":
    main()
