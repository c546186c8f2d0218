"""The parallel backup format: tables' rows in ranges, each COPYed into its own object under one exported snapshot."""
