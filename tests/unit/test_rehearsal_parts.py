"""The rehearsal's pure parts: durations, the command's URL and environment, the default rollback, the schema
comparison, the advice rules, the sampling bounds and scratch names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from psycopg.conninfo import conninfo_to_dict

from dbops.config.durations import format_duration
from dbops.postgres.connection import ConnectionSpec
from dbops.rehearsal import advice, parse_duration
from dbops.rehearsal.command import command_env, database_url, default_downgrade, redact, secrets_of
from dbops.rehearsal.schema import compare, normalize
from dbops.rehearsal.scratch import PURPOSE, created_at_of, new_id
from dbops.rehearsal.watcher import Span
from dbops.restore.databases import MAX_NAME, work_name


@pytest.mark.parametrize(
    ("text", "seconds"), [("500ms", 0.5), ("5s", 5.0), ("2m", 120.0), ("1h", 3600.0), ("1.5s", 1.5), ("10min", 600.0)]
)
def test_durations_are_read_with_their_unit(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5", "5 sec", "", "-1s", "1d", "s"])
def test_a_duration_without_a_known_unit_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="write it with its unit"):
        parse_duration(text)


def test_durations_are_shown_in_the_unit_people_read() -> None:
    assert [format_duration(s) for s in (0.021, 2.0034, 600)] == ["21ms", "2.00s", "10.0m"]


ALEMBIC = ["python", "-m", "alembic", "-c", "alembic.ini", "-x", "tenant=a"]


@pytest.mark.parametrize(
    ("command", "revision", "expected"),
    [
        (["alembic", "upgrade", "head"], "0002", ["alembic", "downgrade", "0002"]),
        ([*ALEMBIC, "upgrade", "0003"], "0002", [*ALEMBIC, "downgrade", "0002"]),
        (["/venv/bin/alembic", "upgrade", "+1", "--sql"], None, ["/venv/bin/alembic", "downgrade", "base"]),
        (["flyway", "migrate"], "0002", None),
        (["./manage.py", "upgrade"], "0002", None),
    ],
)
def test_the_default_rollback_is_alembic_downgrade_to_the_revision_before(
    command: list[str], revision: str | None, expected: list[str] | None
) -> None:
    assert default_downgrade(command, revision) == expected


SPEC = ConnectionSpec(host="db.example.com", port=6432, user="app user", password="p@ss:w/rd?#%", dbname="db__x")


def test_the_scratch_url_carries_every_part_exactly() -> None:
    parsed = conninfo_to_dict(database_url(SPEC.model_copy(update={"sslrootcert": "/etc/ca.pem"})))

    assert parsed == {
        "host": "db.example.com",
        "port": "6432",
        "user": "app user",
        "password": "p@ss:w/rd?#%",
        "dbname": "db__x",
        "sslmode": "prefer",
        "sslrootcert": "/etc/ca.pem",
    }


@pytest.mark.parametrize(("host", "key"), [("::1", "host"), ("/var/run/postgresql", "host")])
def test_the_scratch_url_handles_ipv6_and_socket_hosts(host: str, key: str) -> None:
    assert conninfo_to_dict(database_url(SPEC.model_copy(update={"host": host})))[key] == host


def test_the_command_gets_a_clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "DBOPS_DATABASE_URL": "postgresql://prod",
        "PGPASSWORD": "production-password",
        "AWS_SECRET_ACCESS_KEY": "k",
        "APP_ENV": "rehearsal",
        "PATH": "/usr/bin",
    }.items():
        monkeypatch.setenv(name, value)

    env = command_env(SPEC, "MIGRATION_DB", ["APP_ENV"])

    assert env["MIGRATION_DB"] == database_url(SPEC)
    assert env["APP_ENV"] == "rehearsal" and env["PATH"] == "/usr/bin"
    assert env["PGPASSWORD"] == "p@ss:w/rd?#%" and env["PGDATABASE"] == "db__x"  # the scratch's, for psql
    assert "DBOPS_DATABASE_URL" not in env and "AWS_SECRET_ACCESS_KEY" not in env and "PGAPPNAME" not in env


def test_output_never_shows_the_password_in_any_spelling() -> None:
    line = f"connecting to {database_url(SPEC)} with password p@ss:w/rd?#%"

    shown = redact(line, secrets_of(SPEC))

    assert "p@ss" not in shown and "p%40ss" not in shown and shown.count("***") == 2


DUMP = """--
-- PostgreSQL database dump
--

\\restrict {key}

SET statement_timeout = 0;

--
-- Name: sprints; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public.sprints (
    id bigint NOT NULL,
    name text NOT NULL{extra}
);


CREATE INDEX sprints_name_idx ON public.sprints USING btree (name);
{index}
\\unrestrict {key}
"""


def test_two_dumps_of_one_schema_are_identical_whatever_pg_dump_varies() -> None:
    first = DUMP.format(key="abc", extra="", index="")
    second = DUMP.format(key="xyz", extra="", index="")

    assert first != second
    assert compare(first, second).identical is True
    assert normalize(first)[0] == "SET statement_timeout = 0;"  # SET lines stay: they are the same every run


INDEX = """
--
-- Name: sprints_id_idx; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX sprints_id_idx ON public.sprints USING btree (id);
"""


def test_each_changed_object_is_named_once_with_its_changed_lines() -> None:
    before = DUMP.format(key="a", extra="", index=INDEX)
    after = DUMP.format(key="b", extra=",\n    archived_reason text", index="")

    check = compare(before, after)

    assert check.identical is False
    assert check.changes == ["changed TABLE public.sprints", "removed INDEX public.sprints_id_idx"]
    assert [o.lines for o in check.objects] == [
        ["+ archived_reason text"],  # `name text NOT NULL` only gained a comma
        ["- CREATE INDEX sprints_id_idx ON public.sprints USING btree (id)"],
    ]
    assert "+    archived_reason text" in check.diff


def _advice(statement: str, mode: str = "AccessExclusiveLock", rewritten: bool = False, major: int = 18) -> str:
    situation = advice.Situation(
        statement=advice.normalized(statement),
        mode=mode,
        table="public.report_snapshots",
        size="412.0 MB",
        lock="40.20s",
        rewritten=rewritten,
        held_past_statement=False,
        server_major=major,
    )
    return advice.advise(situation)


def test_a_type_change_that_rewrote_is_told_to_go_through_a_new_column() -> None:
    text = _advice("ALTER TABLE report_snapshots ALTER COLUMN created_at TYPE timestamptz(0)", rewritten=True)
    assert text.startswith("Changing the column's type rewrote public.report_snapshots (412.0 MB)")
    assert "binary-coercible" in text and "backfill the existing rows in batches" in text


def test_a_column_added_with_a_volatile_default_is_told_to_backfill() -> None:
    text = _advice("alter table report_snapshots add column share_id uuid default gen_random_uuid()", rewritten=True)
    assert "volatile" in text and "PostgreSQL 11+" in text and "backfill" in text


def test_an_index_built_without_concurrently_is_told_to_build_it_concurrently() -> None:
    text = _advice("CREATE INDEX rs_idx ON report_snapshots (sprint_id)", mode="ShareLock")
    assert text.startswith("CREATE INDEX held SHARE") and "postgresql_concurrently=True" in text
    concurrent = _advice("CREATE INDEX CONCURRENTLY rs_idx ON report_snapshots (sprint_id)", mode="ShareLock")
    assert "CREATE INDEX held SHARE" not in concurrent


def test_a_foreign_key_or_check_without_not_valid_is_told_to_validate_separately() -> None:
    fk = "ALTER TABLE report_snapshots ADD CONSTRAINT f FOREIGN KEY (sprint_id) REFERENCES sprints(id)"
    assert "Add it NOT VALID" in _advice(fk, mode="ShareRowExclusiveLock")
    assert "Add it NOT VALID" not in _advice(fk + " NOT VALID", mode="ShareRowExclusiveLock")
    check = "ALTER TABLE report_snapshots ADD CONSTRAINT c CHECK (id > 0)"
    assert "NOT VALID (instant), then VALIDATE CONSTRAINT" in _advice(check)


def test_set_not_null_is_told_to_go_through_a_valid_check_on_12_and_later() -> None:
    text = _advice("ALTER TABLE report_snapshots ALTER COLUMN created_by SET NOT NULL")
    assert "CHECK (column IS NOT NULL) constraint NOT VALID" in text and "(PostgreSQL 12+)" in text
    assert "upgrade it first" in _advice("ALTER TABLE report_snapshots ALTER COLUMN x SET NOT NULL", major=11)


def test_words_inside_literals_and_comments_do_not_decide_the_advice() -> None:
    text = _advice("UPDATE report_snapshots SET title = 'CREATE INDEX' -- SET NOT NULL", mode="ExclusiveLock")
    assert text.startswith("The statement changed rows of public.report_snapshots")


def test_what_each_lock_mode_blocks() -> None:
    assert advice.sql_name("ShareRowExclusiveLock") == "SHARE ROW EXCLUSIVE"
    assert [advice.blocks_application(m) for m in advice.MODES] == [False] * 4 + [True] * 4
    assert advice.blocks("AccessExclusiveLock") == "reads and writes" and advice.blocks("ShareLock") == "writes"


def test_a_sampled_span_is_bounded_by_the_samples_around_it() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    span = Span(first=t0 + timedelta(seconds=0.02), last=t0 + timedelta(seconds=2.0), before=t0)
    span.after = t0 + timedelta(seconds=2.02)

    assert span.bounds() == pytest.approx((1.98, 2.02))
    assert span.estimate() == pytest.approx((2.0, 0.02))


def test_a_scratch_database_name_keeps_its_creation_time_whatever_the_database_name() -> None:
    created = datetime(2026, 11, 30, 3, 10, 23, tzinfo=UTC)
    name = work_name("x" * 63, new_id(created), PURPOSE)

    assert len(name) <= MAX_NAME
    assert created_at_of(name) == created
    assert created_at_of("sprint_reports_v2__restore_ab12cd34") is None
