"""dbops.contract is the one place the functions' names are spelled: every environment variable a settings class
reads is named there (and nothing there is read by none), and the kinds, tasks and metric names the other modules
use are its own."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from dbops import contract
from dbops.backup import catalog, retention
from dbops.health.model import metric_name
from dbops.maintenance import TASKS
from dbops.settings import (
    BackupTaskEnvironment,
    FunctionSettings,
    HealthEnvironment,
    MaintenanceSettings,
    RestoreTaskEnvironment,
    WatcherEnvironment,
)
from handlers import observability

SETTINGS_CLASSES: tuple[type[BaseSettings], ...] = (
    FunctionSettings,
    MaintenanceSettings,
    HealthEnvironment,
    BackupTaskEnvironment,
    RestoreTaskEnvironment,
    WatcherEnvironment,
)
# read outside dbops.settings: Powertools' own
READ_ELSEWHERE = {
    contract.ENV_POWERTOOLS_SERVICE_NAME,
    contract.ENV_POWERTOOLS_METRICS_NAMESPACE,
}


def _read_by(cls: type[BaseSettings]) -> set[str]:
    prefix = str(cls.model_config.get("env_prefix", ""))
    names = set()
    for field, info in cls.model_fields.items():
        alias = info.validation_alias
        names.add(alias if isinstance(alias, str) else f"{prefix}{field}".upper())
    return names


def test_every_environment_variable_read_is_named_in_the_contract_and_every_name_is_read() -> None:
    named = {value for key, value in vars(contract).items() if key.startswith("ENV_") and key != "ENV_PREFIX"}
    read = set().union(*(_read_by(cls) for cls in SETTINGS_CLASSES))
    assert read - named == set(), "read but not in dbops.contract"
    assert named - read - READ_ELSEWHERE == set(), "in dbops.contract but read by no settings class"


def test_kinds_tasks_and_namespace_are_the_contracts() -> None:
    assert catalog.BACKUP_KINDS is contract.BACKUP_KINDS
    assert retention.RETAINED_KINDS is contract.RETAINED_KINDS
    assert set(contract.RETAINED_KINDS) <= set(contract.BACKUP_KINDS)
    assert TASKS is contract.MAINTENANCE_TASKS
    assert observability.NAMESPACE == contract.METRICS_NAMESPACE


def test_the_health_metrics_the_alarms_watch_are_named_as_the_health_report_names_them() -> None:
    for key, name in contract.HEALTH_VALUE_METRICS.items():
        assert metric_name(key) == name


def test_per_database_health_thresholds_are_set_over_the_shared_ones() -> None:
    health = HealthEnvironment.model_validate(
        {
            "thresholds": {"connections_warn_percent": 80, "long_query_warn_seconds": 30},
            "thresholds_by_database": {"billing": {"connections_warn_percent": 70}},
        }
    )
    billing, other = health.thresholds_for("billing"), health.thresholds_for("sprint_reports")
    assert (billing.connections_warn_percent, billing.long_query_warn_seconds) == (70, 30)
    assert (other.connections_warn_percent, other.long_query_warn_seconds) == (80, 30)


def test_maintenance_for_a_database_that_is_not_configured_is_refused() -> None:
    with pytest.raises(ValidationError, match="not configured: billing"):
        MaintenanceSettings.model_validate(
            {
                "databases": [{"name": "app", "url": "postgresql://u@h/app"}],
                "maintenance_by_database": {"billing": {"rules": []}},
            }
        )
