"""The engine minor version against the newest RDS offers for its major (probe rds_engine_version), against moto's
RDS with the versions the local stand-in offers (moto has no DescribeDBEngineVersions of its own)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from dbops import aws
from dbops.health import Thresholds
from dbops.health.model import Status
from dbops.health.probes.rds_engine import probe_rds_engine_version
from local_stack.aws import LocalAws
from local_stack.rds_engine_versions import offer_engine_versions


@pytest.fixture
def instance(local_aws: LocalAws) -> Iterator[str]:
    """A PostgreSQL 15.4 instance; RDS offers 15.4 to 15.8 and 16.4."""
    offer_engine_versions("postgres", ["14.13", "15.4", "15.5", "15.7", "15.8", "16.4"])
    name = f"db-{uuid.uuid4().hex[:8]}"
    aws.client("rds").create_db_instance(
        DBInstanceIdentifier=name,
        Engine="postgres",
        EngineVersion="15.4",
        DBInstanceClass="db.t3.micro",
        AllocatedStorage=20,
        MasterUsername="postgres",
        MasterUserPassword="not-used-here",
    )
    yield name
    aws.client("rds").delete_db_instance(DBInstanceIdentifier=name, SkipFinalSnapshot=True)


def test_three_minor_versions_behind_is_a_warning_naming_the_newest(instance: str) -> None:
    finding = probe_rds_engine_version("instance", instance, Thresholds(), datetime.now(UTC))
    assert finding.status is Status.WARN, finding.message
    assert finding.values["rds_minor_versions_behind"] == 3  # 15.5, 15.7, 15.8: never 16.x, another major
    assert "newest 15.8" in finding.message


def test_on_the_newest_minor_it_is_ok(instance: str) -> None:
    offer_engine_versions("postgres", ["15.4", "16.4"])
    finding = probe_rds_engine_version("instance", instance, Thresholds(), datetime.now(UTC))
    assert finding.status is Status.OK and finding.values["rds_minor_versions_behind"] == 0


def test_far_behind_is_critical(instance: str) -> None:
    offer_engine_versions("postgres", ["15.4", *(f"15.{n}" for n in range(5, 12))])
    finding = probe_rds_engine_version("instance", instance, Thresholds(), datetime.now(UTC))
    assert finding.status is Status.CRITICAL
