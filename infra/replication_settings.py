"""cdk.json `replication`: a second copy of the backups in another region (infra/replication.py), off unless given.

The replica bucket lives in the DR stack (`<stack_name>-dr`, same app, the DR region); the main stack finds it by
name, not by a cross-region reference: the bucket's name and its key's alias are derived from the stack name, the
DR account and the DR region, so both stacks know them at synth time without an AWS account (see README "Second
copy in another region")."""

from __future__ import annotations

from pydantic import Field

from infra.settings_model import SettingsModel

RULE_ID = "backups-to-dr"  # the backup bucket's replication rule (also a dimension of its metrics)
BUCKET_NAME_MAX = 63
ACCOUNT_ID_LENGTH = 12


class ReplicationSettings(SettingsModel):
    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$", description="the DR region, e.g. us-west-2")
    lag_alarm_minutes: int = Field(
        default=60, ge=1, le=1440, description="ReplicationLag alarms when an object waits longer than this"
    )
    account: str | None = Field(
        default=None, pattern=r"^\d{12}$", description="the DR account; absent: the stack's own account"
    )
    bucket_name: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        description="the replica bucket's name; absent: <stack_name>-replica-<account>-<region>",
    )

    def stack_name(self, stack_name: str) -> str:
        """The DR stack's name."""
        return f"{stack_name}-dr"

    def role_name(self, stack_name: str) -> str:
        """The replication role's name: fixed, so a cross-account DR stack can name it before it exists."""
        return f"{stack_name}-replication"

    def key_alias(self, stack_name: str) -> str:
        """The replica key's alias: the main stack names the key by it (its ARN is only known once made)."""
        return f"alias/{stack_name}-replica"

    def bucket_name_for(self, stack_name: str, account: str) -> str:
        """The replica bucket's name; `account` may be a token (the DR stack's own account, resolved at deploy)."""
        return self.bucket_name or f"{stack_name.lower()}-replica-{account}-{self.region}"

    def problems(self, stack_name: str) -> list[str]:
        """What is wrong with these settings for this stack name (checked with the stack's settings)."""
        found = []
        longest = len(self.bucket_name_for(stack_name, "0" * ACCOUNT_ID_LENGTH))
        if longest > BUCKET_NAME_MAX:
            found.append(
                f"replication: the replica bucket's name would be {longest} characters (S3 allows "
                f"{BUCKET_NAME_MAX}): give replication.bucket_name"
            )
        if len(self.role_name(stack_name)) > 64:
            found.append("replication: the stack name is too long for the replication role's name (64 characters)")
        return found
