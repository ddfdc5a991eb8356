"""Metrics, logs, tracing and health: how operators see the bus."""
