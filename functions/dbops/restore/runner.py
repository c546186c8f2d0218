"""Start a restore (or drill, or rehearsal) execution on the restore state machine, and list them."""

from __future__ import annotations

import time
import uuid
from typing import Any

from dbops.aws import stepfunctions
from dbops.restore.models import RestoreRequest


def start_restore(state_machine_arn: str, request: RestoreRequest, name: str | None = None) -> str:
    label = "drill" if request.mode == "drill" else "restore"
    name = name or f"{label}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    return stepfunctions.start(state_machine_arn, name, request.model_dump_json(), "restore")


def list_restores(state_machine_arn: str, limit: int = 20) -> list[dict[str, Any]]:
    return stepfunctions.executions(state_machine_arn, limit)
