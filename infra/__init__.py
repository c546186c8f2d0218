"""The dbops CDK app: constructs per concern (storage, layers, functions, schedules, monitoring), composed in stack.py."""
