"""AWS access: the one boto3 client factory here, and an adapter per service beside it (S3 streams, SNS, RDS,
Step Functions, Secrets Manager, CloudWatch, the application hooks on SSM and EventBridge).

boto3 honours AWS_ENDPOINT_URL itself, so the same code reaches AWS or the local moto server. boto3 is imported
on the first client (~70 ms): a backup creates its client on the upload thread while pg_dump starts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

_region: str | None = None  # `use_region`: every client in that region instead of the environment's


def use_region(region: str | None) -> None:
    """Every client made from now on talks to `region` (the CLI's --region: the DR region's replica and state
    machine); None: the environment's region again."""
    global _region
    _region = region
    client.cache_clear()


@contextmanager
def region_kept() -> Iterator[None]:
    """A command's `use_region` undone when it ends: `dbops.cli.main` called again in the same process (a
    pipeline's script, the tests) starts in the environment's region, not in the last command's."""
    before = _region
    try:
        yield
    finally:
        if _region != before:
            use_region(before)


@cache
def client(service: str) -> Any:
    import boto3
    from botocore.config import Config

    # AWS_MAX_ATTEMPTS / AWS_RETRY_MODE in the environment override these defaults
    attempts = int(os.environ.get("AWS_MAX_ATTEMPTS", "5"))
    config = Config(
        retries={"mode": "standard", "max_attempts": attempts},
        connect_timeout=5,
        read_timeout=60,
        # every upload carries a CRC32 that S3 checks; without this, botocore also SHA-256-hashes each body to sign
        # it whenever the endpoint is plain HTTP (a local one), on top of the backup's own SHA-256
        s3={"payload_signing_enabled": False},
    )
    session = boto3.session.Session(region_name=_region) if _region else boto3.session.Session()
    return session.client(service, config=config)  # type: ignore[call-overload]


def reset_clients() -> None:
    """Forget cached clients (after the endpoint or credentials in the environment change)."""
    client.cache_clear()
