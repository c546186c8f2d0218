"""The operator's view: each configured database's backups, recovery, drills, health and alarms, worst first."""

from dbops.status.model import Aspect, DatabaseStatus, StatusReport, StatusTarget
from dbops.status.runner import check_status

__all__ = ["Aspect", "DatabaseStatus", "StatusReport", "StatusTarget", "check_status"]
