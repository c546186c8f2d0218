"""The dbops CDK app: one construct per concern (storage, layers, functions, schedules, monitoring); see stack.py."""
