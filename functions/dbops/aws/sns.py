"""Notifications to the operators' SNS topic."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from dbops import aws
from dbops.errors import StorageError


def notify(topic_arn: str | None, subject: str, message: str) -> None:
    if not topic_arn:
        return
    try:
        aws.client("sns").publish(TopicArn=topic_arn, Subject=subject[:100], Message=message)
    except (BotoCoreError, ClientError) as exc:
        raise StorageError(f"notification to {topic_arn} failed: {exc}") from None
