"""cdk.json `restore`: how a selective restore's swap treats the live database (dbops.restore.selective_swap.locks).

Durations as operators write them (`200ms`, `60s`, `5s`); the functions get seconds (dbops.contract)."""

from __future__ import annotations

from pydantic import Field, field_validator

from dbops import contract
from dbops.config.durations import parse_duration
from infra.settings_model import SettingsModel


class RestoreSettings(SettingsModel):
    """cdk.json `restore`: the swap's lock timeout per attempt, its lock-wait budget, and its longest pause."""

    lock_timeout: str | float = Field(
        default=0.2,
        description="how long one attempt of the swap may wait for all its locks together (200ms); under the "
        "server's deadlock_timeout (1s), so in a wait cycle with the application the swap gives way",
    )
    lock_wait_budget: str | float = Field(
        default=60.0, description="attempts stop after this long and the restore is refused for now (60s)"
    )
    max_pause: str | float = Field(
        default=5.0,
        description="a swap estimated to hold the application's writes longer than this is refused before it "
        "takes any lock (5s)",
    )

    @field_validator("lock_timeout", "lock_wait_budget", "max_pause")
    @classmethod
    def _seconds(cls, value: str | float) -> float:
        seconds = parse_duration(value) if isinstance(value, str) else float(value)
        if seconds < 0:
            raise ValueError(f"{value!r}: give a duration of zero or more")
        return seconds

    @field_validator("lock_timeout")
    @classmethod
    def _under_deadlock_timeout(cls, value: float) -> float:
        if not 0 < value < 1:
            raise ValueError(
                f"{value:g}s: the lock timeout must be longer than zero and under 1s (PostgreSQL's default "
                "deadlock_timeout), so that the swap, not the application, is the side that gives way"
            )
        return value

    @field_validator("lock_wait_budget")
    @classmethod
    def _budget(cls, value: float) -> float:
        if value > 600:
            raise ValueError(f"{value:g}s: the lock wait budget must fit in the Swap step's Lambda run (at most 10m)")
        return value

    @field_validator("max_pause")
    @classmethod
    def _pause(cls, value: float) -> float:
        if not 0 < value <= 3600:
            raise ValueError(f"{value:g}s: give a max_pause longer than zero and at most 1h")
        return value

    def environment(self) -> dict[str, str]:
        """What dbops.settings.FunctionSettings reads (restore_lock_timeout_s, ...)."""
        return {
            contract.ENV_RESTORE_LOCK_TIMEOUT_S: f"{float(self.lock_timeout):g}",
            contract.ENV_RESTORE_LOCK_WAIT_BUDGET_S: f"{float(self.lock_wait_budget):g}",
            contract.ENV_RESTORE_MAX_PAUSE_S: f"{float(self.max_pause):g}",
        }
