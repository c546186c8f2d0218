"""Maintenance that runs itself without blocking the application: analyze, vacuum, reindex, cleanup, archive.

plan = plan_task(spec, "cleanup", config)          # what will run, on which objects, why
summary = execute_plan(spec, plan, config)         # object by object, failures recorded, the rest done
summary = run_task(spec, "vacuum", config)         # both at once
print(format_summary(summary))
"""

from dbops.config.maintenance import DEFAULT_RULES, DEFAULT_SCHEDULES, TASKS, MaintenanceConfig, RetentionRule, Task
from dbops.maintenance.models import MaintenanceSummary, ObjectResult, Plan, PlannedObject, ProgressEvent
from dbops.maintenance.report import format_plan, format_summary
from dbops.maintenance.tasks import execute_plan, plan_task, planned_summary, run_task

__all__ = [
    "DEFAULT_RULES",
    "DEFAULT_SCHEDULES",
    "TASKS",
    "MaintenanceConfig",
    "MaintenanceSummary",
    "ObjectResult",
    "Plan",
    "PlannedObject",
    "ProgressEvent",
    "RetentionRule",
    "Task",
    "execute_plan",
    "format_plan",
    "format_summary",
    "plan_task",
    "planned_summary",
    "run_task",
]
