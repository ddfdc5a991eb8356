"""Deployment: least-privilege NATS configuration and per-service credentials.

``bus deploy nats-config`` is the command; ``render_bundle`` the library call behind it.
"""

from bus.deploy.permissions import (
    Permissions,
    agent_permissions,
    client_permissions,
    coordinator_permissions,
    inbox_prefix,
)
from bus.deploy.render import Bundle, ServerConfig, render_bundle

__all__ = [
    "Bundle",
    "Permissions",
    "ServerConfig",
    "agent_permissions",
    "client_permissions",
    "coordinator_permissions",
    "inbox_prefix",
    "render_bundle",
]
