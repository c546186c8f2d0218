"""Restores that cannot lose data: validate, safety backup, stage side by side, check, swap, or roll back."""
