"""The watcher container beside a rehearsal's migration container, in the same ECS task (`mode: rehearse`).

It starts first: the migration container waits until it is HEALTHY, which it becomes once its first sample is
taken (it touches `dbops-watching` in its temporary folder; the task definition's health check looks for it). It samples
the scratch database's sessions (dbops.rehearsal.watcher) until ECS stops it with SIGTERM, which ECS sends when
the migration container, the essential one, has exited; it then writes its observations to the bucket (the
JudgeRehearsal step reads them) and exits. It connects with the URL ECS put in DBOPS_REHEARSAL_URL from the
rehearsal secret; its orders are in DBOPS_REHEARSAL_WATCH: {"bucket", "key", "interval_s", "max_s"}. It never
outlives `max_s` plus a minute (a migration cannot run longer than that). An error ends it with one line on
stderr and exit code 1: the migration's own exit code is what the state machine reads, and the judgement says
that the watcher left no observations.
"""

from __future__ import annotations

import json
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dbops import contract
from dbops.errors import DbopsError, validation_problems
from dbops.postgres.connection import ConnectionSpec
from dbops.rehearsal import artifacts
from dbops.rehearsal.watcher import Watcher
from dbops.settings import WatcherEnvironment

OVERRUN_S = 60.0


class WatchOrders(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bucket: str = Field(min_length=3)
    key: str = Field(min_length=1)
    interval_s: float = Field(ge=0.001, le=5)
    max_s: float = Field(gt=0)


def parse_orders(text: str | None) -> WatchOrders:
    if not text:
        raise ValueError(f"{contract.ENV_REHEARSAL_WATCH} is not set: the state machine passes the orders in it")
    try:
        return WatchOrders.model_validate(json.loads(text))
    except (ValueError, ValidationError) as exc:
        detail = validation_problems(exc) if isinstance(exc, ValidationError) else "not JSON"
        raise ValueError(f"invalid {contract.ENV_REHEARSAL_WATCH}: {detail}") from None


def _fail(message: str) -> int:
    print(f"dbops rehearsal watcher: error: {' '.join(message.split())}", file=sys.stderr, flush=True)
    return 1


def main() -> int:
    try:
        env = WatcherEnvironment()
        orders = parse_orders(env.orders)
        url = env.url.get_secret_value() if env.url else None
        if not url:
            raise ValueError(f"{contract.ENV_REHEARSAL_URL} is empty: the rehearsal secret holds no URL")
        spec = ConnectionSpec.from_url(url)
    except (ValueError, DbopsError) as exc:
        return _fail(str(exc))
    stop = threading.Event()

    def _stopped(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stopped)
    signal.signal(signal.SIGINT, _stopped)
    watcher = Watcher(spec, orders.interval_s, exclude=[])
    try:
        watcher.start()
    except Exception as exc:  # psycopg's own message: it names no password
        return _fail(f"cannot watch {spec.describe()}: {exc}")
    (Path(tempfile.gettempdir()) / contract.REHEARSAL_READY_FILE).touch()
    print(f"watching {spec.describe()} every {orders.interval_s} s", flush=True)
    stop.wait(orders.max_s + OVERRUN_S)
    observations = watcher.stop()
    try:
        artifacts.save_observations(orders.bucket, orders.key, observations)
    except DbopsError as exc:
        return _fail(str(exc))
    print(
        f"{observations.samples} samples, {len(observations.statements)} statements: s3://{orders.bucket}/{orders.key}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
