"""Secrets Manager: a secret's JSON read and written, with errors that name the secret and never its value."""

from __future__ import annotations

import json
from typing import Any

from dbops import aws
from dbops.errors import ConfigError, StorageError


def read_json(secret_id: str) -> Any:
    """The secret's string, parsed as JSON."""
    try:
        return json.loads(aws.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"])
    except Exception as exc:  # whatever went wrong, its message may quote the secret: name only its kind
        raise ConfigError(f"could not read database secret {secret_id}: {type(exc).__name__}") from None


def write_json(secret_id: str, value: dict[str, str], what: str) -> None:
    """A new version of the secret holding `value`; `what` names the secret in an error."""
    from botocore.exceptions import BotoCoreError, ClientError  # loaded on first use, as boto3 is

    try:
        aws.client("secretsmanager").put_secret_value(SecretId=secret_id, SecretString=json.dumps(value))
    except (BotoCoreError, ClientError) as exc:
        code = exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else type(exc).__name__
        raise StorageError(f"cannot write {what} {secret_id}: {code}") from None
