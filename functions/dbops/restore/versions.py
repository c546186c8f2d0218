"""Whether this pg_restore and the server can restore a backup (the Validate step's and a rehearsal's check)."""

from __future__ import annotations

from dbops.backup.catalog import BackupManifest
from dbops.errors import RestoreRefused
from dbops.postgres.connection import ConnectionSpec, connect, server_version_num
from dbops.postgres.tools import find_tool, server_major, tool_version
from dbops.restore import databases


def check_versions(manifest: BackupManifest, spec: ConnectionSpec, pg_bin_dir: str | None) -> None:
    """pg_restore must read the archive, and the server must not be older than the one backed up."""
    pg_restore = tool_version(find_tool("pg_restore", pg_bin_dir))
    if pg_restore.major < int(manifest.pg_dump_version.split(".")[0]):
        raise RestoreRefused(
            f"pg_restore {pg_restore.number} cannot read an archive made by pg_dump {manifest.pg_dump_version}"
        )
    with connect(databases.admin_spec(spec)) as conn:
        server = server_version_num(conn)
    if server_major(server) < server_major(manifest.server_version_num):
        raise RestoreRefused(
            f"the server is PostgreSQL {server_major(server)}, older than the backup's "
            f"{server_major(manifest.server_version_num)}: restoring to an older major version is not supported"
        )
