"""The backup repository: taking a backup, where it runs, the catalog of manifests, reading back, verify, retention."""
