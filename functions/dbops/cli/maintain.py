"""dbops maintain TASK: the plan, then progress (stderr), then the summary; exit 1 when an object failed."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dbops.cli.common import EnvDefault, add_database_url, print_json, spec_from
from dbops.errors import ConfigError, validation_problems
from dbops.maintenance import (
    TASKS,
    MaintenanceConfig,
    MaintenanceSummary,
    Plan,
    ProgressEvent,
    execute_plan,
    format_plan,
    format_summary,
    plan_task,
    planned_summary,
)
from dbops.postgres.connection import ConnectionSpec

BATCH_LINES_EVERY_S = 1.0


def load_config(path: str | None) -> MaintenanceConfig:
    """A JSON file holding MaintenanceConfig fields (thresholds, timeouts, rules); defaults when absent."""
    if not path:
        return MaintenanceConfig()
    try:
        return MaintenanceConfig.model_validate_json(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read maintenance config {path}: {exc.strerror}") from None
    except ValidationError as exc:
        problems = validation_problems(exc, plain=True)
        raise ConfigError(f"invalid maintenance config {path}: {problems}") from None


class _ProgressPrinter:
    """One line per object start/end and retry; batch lines at most once a second."""

    def __init__(self) -> None:
        self._last_batch = 0.0

    def __call__(self, event: ProgressEvent) -> None:
        now = time.monotonic()
        if event.event == "batch":
            if now - self._last_batch < BATCH_LINES_EVERY_S:
                return
            self._last_batch = now
        print(f"  [{event.event}] {event.object}: {event.message}", file=sys.stderr, flush=True)


def _execute(spec: ConnectionSpec, config: MaintenanceConfig) -> Callable[[Plan], MaintenanceSummary]:
    return lambda plan: execute_plan(spec, plan, config, progress=_ProgressPrinter())


def cmd_maintain(args: argparse.Namespace) -> int:
    spec = spec_from(args)
    config = load_config(args.config)
    plan = plan_task(spec, args.task, config)
    if not args.json:
        print(format_plan(plan), flush=True)
    run = planned_summary if args.dry_run else _execute(spec, config)
    summary = run(plan)
    if args.json:
        print_json({"plan": plan.model_dump(mode="json"), "summary": summary.model_dump(mode="json")})
    else:
        print(format_summary(summary))
    return 0 if summary.ok else 1


def register(sub: Any) -> None:
    p = sub.add_parser(
        "maintain",
        help="run a maintenance task: analyze, vacuum, reindex, cleanup or archive",
        description="Plan the task, run it object by object with lock and statement timeouts, summarize.",
    )
    p.add_argument("task", choices=TASKS)
    add_database_url(p)
    p.add_argument("--dry-run", action="store_true", help="show the plan only; change nothing")
    p.add_argument("--json", action="store_true", help="print the plan and summary as JSON")
    p.add_argument(
        "--config",
        action=EnvDefault,
        envvar="DBOPS_MAINTENANCE_CONFIG",
        required=False,
        help="JSON file with thresholds, timeouts and retention/archive rules (default: the shipped rules)",
    )
    p.set_defaults(run=cmd_maintain)
