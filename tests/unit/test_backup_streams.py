"""How many COPY streams a parallel backup runs (dbops.backup.parallel.plan.copy_streams): DBOPS_MAX_STREAMS at
most, and no more than the machine's vCPUs: a Fargate task's from its task definition's CPU units, Lambda's from its
memory."""

from __future__ import annotations

import json
import os

import pytest

from dbops.backup.database_backup import format_for
from dbops.backup.parallel.plan import copy_streams
from dbops.contract import ENV_LAMBDA_MEMORY_SIZE, ENV_TASK_CPU_UNITS
from dbops.settings import FunctionSettings


@pytest.mark.parametrize(
    ("max_streams", "cpu_units", "count", "why"),
    [
        (4, 2048, 2, "Fargate task: 2 vCPUs"),
        (4, 4096, 4, "max_streams 4 (Fargate task: 4 vCPUs)"),
        (4, 16384, 4, "max_streams 4 (Fargate task: 16 vCPUs)"),
        (8, 16384, 8, "max_streams 8 (Fargate task: 16 vCPUs)"),
        (4, 1536, 1, "Fargate task: 1.5 vCPUs"),  # rounded down
        (4, 512, 1, "Fargate task: 0.5 vCPUs"),  # at least one
        (1, 256, 1, "max_streams 1 (Fargate task: 0.25 vCPUs)"),
    ],
)
def test_in_a_fargate_task_the_task_definitions_vcpus_set_the_streams(
    max_streams: int, cpu_units: int, count: int, why: str
) -> None:
    # the task's units win over Lambda's memory and over the host's CPU count (which is not the task's)
    streams = copy_streams(max_streams, lambda_memory_mb=1769, task_cpu_units=cpu_units)
    assert (streams.count, streams.why) == (count, why)


@pytest.mark.parametrize(
    ("memory_mb", "count", "why"),
    [
        (1024, 1, "Lambda: 1024 MB"),
        (3538, 2, "Lambda: 3538 MB"),
        (10240, 4, "max_streams 4 (Lambda: 10240 MB)"),
    ],
)
def test_in_lambda_its_memory_sets_the_streams(memory_mb: int, count: int, why: str) -> None:
    if (os.cpu_count() or 1) < count:
        pytest.skip(f"this machine has fewer than {count} CPUs")
    streams = copy_streams(4, lambda_memory_mb=memory_mb)
    assert (streams.count, streams.why) == (count, why)


def test_the_backup_task_reads_its_cpu_units_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    database = {"name": "app", "url": "postgresql://u:p@db:5432/app", "backup_format": "parallel"}
    monkeypatch.setenv("DBOPS_BUCKET", "bucket")
    monkeypatch.setenv("DBOPS_DATABASES", json.dumps([database]))
    monkeypatch.delenv(ENV_LAMBDA_MEMORY_SIZE, raising=False)
    monkeypatch.setenv(ENV_TASK_CPU_UNITS, "2048")

    choice = format_for(FunctionSettings(), "app")

    assert (choice.format, choice.workers, choice.streams_why) == ("parallel", 2, "Fargate task: 2 vCPUs")
    monkeypatch.setenv(ENV_TASK_CPU_UNITS, "one")
    with pytest.raises(ValueError, match=ENV_TASK_CPU_UNITS):
        FunctionSettings()
