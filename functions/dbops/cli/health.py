"""dbops health: every probe against one database, as a readable report (worst first) or JSON.

Exit codes follow the monitoring-plugin convention: 0 ok, 1 warn, 2 critical, 3 when a probe failed to run
(its query failed or timed out) and nothing is critical, or when the check itself could not start (bad
settings). A probe that does not apply (`unknown`: no bucket, no pg_stat_statements) leaves the code as is.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pydantic import ValidationError

from dbops.cli import error_line, typed_names
from dbops.cli.common import EnvDefault, add_database_url, print_json, spec_from
from dbops.errors import ConfigError, DbopsError, validation_problems
from dbops.health import HealthSettings, Thresholds, format_report, run_health

EXIT_CHECK_FAILED = 3


def _thresholds(text: str | None) -> Thresholds:
    if not text:
        return Thresholds()
    try:
        return Thresholds.model_validate(json.loads(text))
    except (json.JSONDecodeError, ValidationError) as exc:
        problems = validation_problems(exc, plain=True) if isinstance(exc, ValidationError) else str(exc)
        raise ConfigError(f"invalid --thresholds: {problems}") from None


def cmd_health(args: argparse.Namespace) -> int:
    try:
        spec = spec_from(args)
        settings = HealthSettings(
            thresholds=_thresholds(args.thresholds),
            bucket=args.bucket or None,
            database_name=args.database_name or None,
            rds_instance_id=args.rds_instance_id or None,
            rds_cluster_id=args.rds_cluster_id or None,
            statement_timeout_ms=args.statement_timeout_ms,
        )
    except (DbopsError, ValidationError) as exc:
        print(f"dbops: error: {error_line(exc, typed_names(args))}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    report = run_health(spec, settings)
    if args.json:
        print_json({**report.model_dump(mode="json"), "exit_code": report.exit_code})
    else:
        print(format_report(report, details_for_ok=args.verbose))
    return report.exit_code


def register(sub: Any) -> None:
    p = sub.add_parser(
        "health",
        help="run every health probe on a database (exit 0 ok, 1 warn, 2 critical, 3 probe failed)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_database_url(p)
    p.add_argument(
        "--bucket",
        action=EnvDefault,
        envvar="DBOPS_BUCKET",
        required=False,
        help="backup bucket for the backup-freshness probe (skipped without one)",
    )
    p.add_argument(
        "--database-name",
        action=EnvDefault,
        envvar="DBOPS_DATABASE_NAME",
        required=False,
        help="the database's name in the backup catalog (default: the URL's database)",
    )
    p.add_argument(
        "--thresholds",
        action=EnvDefault,
        envvar="DBOPS_HEALTH_THRESHOLDS",
        required=False,
        help="JSON overrides, e.g. '{\"connections_warn_percent\": 80}'",
    )
    p.add_argument(
        "--rds-instance-id",
        action=EnvDefault,
        envvar="DBOPS_RDS_INSTANCE_ID",
        required=False,
        help="its RDS instance: point-in-time readiness (automated backups kept, LatestRestorableTime recent)",
    )
    p.add_argument(
        "--rds-cluster-id",
        action=EnvDefault,
        envvar="DBOPS_RDS_CLUSTER_ID",
        required=False,
        help="its Aurora cluster, instead of an instance",
    )
    p.add_argument("--statement-timeout-ms", type=int, default=5000, help="per probe query (default 5000)")
    p.add_argument("--json", action="store_true", help="the full report as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="details of ok probes too")
    p.set_defaults(run=cmd_health)
