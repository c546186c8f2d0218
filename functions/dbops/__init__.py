"""dbops: PostgreSQL operations on AWS — trusted backups, safe restores, health and maintenance."""

__version__ = "0.1.0"
