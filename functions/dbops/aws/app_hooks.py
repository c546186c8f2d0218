"""Application stop and start around a restore: an SSM maintenance-mode parameter or an EventBridge event."""

from __future__ import annotations

import json

from botocore.exceptions import BotoCoreError, ClientError

from dbops import aws
from dbops.config.databases import AppHook
from dbops.errors import StorageError


def signal_application(hook: AppHook, action: str, database: str, restore_id: str) -> None:
    """action: "stop" or "start". Idempotent: repeating it leaves the same state."""
    try:
        if hook.type == "ssm":
            value = hook.stop_value if action == "stop" else hook.start_value
            aws.client("ssm").put_parameter(Name=hook.parameter, Value=value, Type="String", Overwrite=True)
        else:
            aws.client("events").put_events(
                Entries=[
                    {
                        "Source": hook.source,
                        "DetailType": "ApplicationStop" if action == "stop" else "ApplicationStart",
                        "Detail": json.dumps({"database": database, "restore_id": restore_id}),
                        "EventBusName": hook.event_bus,
                    }
                ]
            )
    except (BotoCoreError, ClientError) as exc:
        raise StorageError(f"application {action} hook ({hook.type}) for {database} failed: {exc}") from None
