"""Thin Lambda entry points: parse the event, call one dbops function, emit metrics, return a model."""
