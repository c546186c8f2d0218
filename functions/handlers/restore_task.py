"""The restore's stage step as an ECS Fargate task, for archives too large for Lambda's 15 minutes and /tmp.

The state machine passes the execution state in DBOPS_RESTORE_STATE; the same dbops code runs.
"""

from __future__ import annotations

import os
import sys

from dbops.restore import steps
from dbops.restore.models import RestoreState
from dbops.settings import FunctionSettings


def main() -> int:
    state = RestoreState.model_validate_json(os.environ["DBOPS_RESTORE_STATE"])
    steps.stage(state, FunctionSettings())
    print(f"staged {state.work_db} from backup {state.backup_id}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
