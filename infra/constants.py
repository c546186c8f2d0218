"""Names, paths and sizes of the dbops stack, in one place."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = ROOT / "functions"
LAYERS_BUILD_DIR = ROOT / "layers" / "build"
LAYER_PLACEHOLDER_DIR = ROOT / "layers" / "placeholder"

CONTEXT_KEY = "dbops"  # cdk.json: {"context": {"dbops": {...settings...}}}

PYTHON_RUNTIME = "python3.12"  # the Python layer is built for it (layers/builder.py PYTHON_VERSION)
PG_BIN_DIR = "/opt/bin"  # the pgtools layer unpacks bin/ here; Lambda puts /opt/lib on LD_LIBRARY_PATH
CERTS_DIR_IN_LAMBDA = "/opt/certs"  # the certificates layer unpacks certs/ here


# what the Lambda asset leaves out: caches and the local stack (moto, throwaway servers: tests and demo only)
FUNCTION_ASSET_EXCLUDES = [
    "**/__pycache__",
    "**/*.pyc",
    "*.egg-info",
    ".mypy_cache",
    ".pytest_cache",
]


@dataclass(frozen=True)
class Sizing:
    memory_mb: int
    timeout_s: int


# backup: pg_dump + zstd (2 threads) + upload; 2 GB gives Lambda a little over one vCPU
BACKUP_SIZING = Sizing(memory_mb=2048, timeout_s=900)
# health: one connection, some fifteen short catalog queries, every 5 minutes
HEALTH_SIZING = Sizing(memory_mb=512, timeout_s=120)
# maintenance: VACUUM / REINDEX CONCURRENTLY / batched deletes run server-side; the function mostly waits
MAINTENANCE_SIZING = Sizing(memory_mb=512, timeout_s=900)
# restore steps: pg_restore from S3 through a local file (-j needs one) and row-count checks
RESTORE_STEP_SIZING = Sizing(memory_mb=2048, timeout_s=900)
RESTORE_STEP_EPHEMERAL_MB = 10240
