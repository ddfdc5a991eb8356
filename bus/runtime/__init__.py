"""Serving agents: direct requests, durable tasks and events, as one NATS micro service."""
