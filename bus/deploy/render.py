"""Render the nats-server configuration of a bus: one account, one user per service, each
with the permissions of its role; plus every service's credential files.

``render_bundle`` writes into one directory::

    nats-server.conf            listen, monitoring, JetStream, ``include auth.conf``
    auth.conf                   account BUS with its users and permissions (mode 0600)
    credentials/<service>/      per service, mounted into that service alone:
        <service>.toml          settings file (BUS_CONFIG): credential, inbox prefix, replicas
        <service>.nk            NKey seed (NKey auth only)

Secrets are written with mode 0600 and never returned or logged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import msgspec

from bus.deploy import permissions as perms
from bus.deploy.credentials import AuthKind, Credential, load_or_create, write_credential
from bus.deploy.credentials import write_secret as _write_secret
from bus.errors import ConfigError
from bus.subjects import Subjects

ACCOUNT = "BUS"
SERVER_CONFIG = "nats-server.conf"
AUTH_CONFIG = "auth.conf"
CREDENTIALS = "credentials"


class ServiceUser(msgspec.Struct, frozen=True):
    """One NATS user: a service, its credential and its permissions (``None``: admin)."""

    credential: Credential
    permissions: perms.Permissions | None


class ServerConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The server side of a deployment (``nats-server.conf``).

    Attributes:
        port, monitor_port: client and HTTP monitoring ports (``/healthz`` on the latter).
        store_dir: JetStream storage directory inside the server's container.
        sync_always: ``sync_interval: always`` — fsync every write before acking it (survives
            power loss with replicas; costs throughput). Default: NATS's 2-minute interval.
        tls_cert, tls_key, tls_ca: TLS files as the server sees them (TLS only when set);
            with ``tls_ca`` clients must present a certificate it signed.
    """

    port: int = 4222
    monitor_port: int = 8222
    store_dir: str = "/data"
    sync_always: bool = False
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None


class Bundle(msgspec.Struct, frozen=True):
    """What ``render_bundle`` wrote (paths only, never secrets)."""

    out_dir: str
    server_config: str
    auth_config: str
    services: dict[str, list[str]]


def plan_users(
    agents: Mapping[str, Sequence[str]],
    credentials: Mapping[str, Credential],
    subjects: Subjects | None = None,
) -> list[ServiceUser]:
    """The users of a bus: every agent (name → its event consumer names), the coordinator,
    the client and the admin, each with the credential named after it."""
    s = subjects or Subjects()
    users = [
        ServiceUser(credentials[name], perms.agent_permissions(name, s, event_consumers=consumers))
        for name, consumers in sorted(agents.items())
    ]
    users += [
        ServiceUser(credentials[perms.COORDINATOR], perms.coordinator_permissions(s)),
        ServiceUser(credentials[perms.CLIENT], perms.client_permissions(s)),
        ServiceUser(credentials[perms.ADMIN], None),
    ]
    return users


def render_auth(users: Sequence[ServiceUser], *, account: str = ACCOUNT) -> str:
    """The ``accounts`` block: one JetStream-enabled account holding every user."""
    lines = [
        "# Rendered by `bus deploy nats-config`: one user per service, least privilege.",
        "accounts {",
        f"  {account}: {{",
        "    jetstream: enabled",
        "    users: [",
    ]
    for user in users:
        lines += _user_lines(user)
    lines += ["    ]", "  }", "}"]
    return "\n".join(lines) + "\n"


def render_server(config: ServerConfig, *, auth_file: str = AUTH_CONFIG) -> str:
    """A complete single-server ``nats-server.conf`` that includes ``auth_file``."""
    lines = [
        "# Rendered by `bus deploy nats-config`.",
        f"port: {config.port}",
        f"http_port: {config.monitor_port}",
        "max_payload: 1MB",
        "jetstream {",
        f"  store_dir: {_q(config.store_dir)}",
    ]
    if config.sync_always:
        lines.append("  sync_interval: always")
    else:
        lines.append("  # sync_interval: always   # fsync each write: survives power loss, slower")
    lines.append("}")
    if config.tls_cert and config.tls_key:
        lines += [
            "tls {",
            f"  cert_file: {_q(config.tls_cert)}",
            f"  key_file: {_q(config.tls_key)}",
        ]
        if config.tls_ca:
            lines += [f"  ca_file: {_q(config.tls_ca)}", "  verify: true"]
        lines.append("}")
    # Relative: nats-server resolves includes against the including file's directory.
    lines.append(f"include {_q(auth_file)}")
    return "\n".join(lines) + "\n"


def render_bundle(
    out_dir: str | Path,
    agents: Mapping[str, Sequence[str]],
    *,
    auth: AuthKind = "nkey",
    subjects: Subjects | None = None,
    replicas: int = 1,
    mount_path: str | None = None,
    server: ServerConfig | None = None,
) -> Bundle:
    """Write the server config, the auth config and every service's credentials.

    Args:
        out_dir: output directory (created); existing credentials in it are reused.
        agents: agent name → names of its event consumers (``permissions.event_consumer``).
        auth: ``nkey`` (default) or ``password``.
        subjects: the bus's names (prefix).
        replicas: stream and bucket replicas written into every settings file.
        mount_path: where each service's credential directory is mounted (``/etc/bus`` in the
            container manifests); default: that directory itself, for local runs.
        server: server options for ``nats-server.conf``.

    Raises:
        ConfigError: an agent is named like a reserved service, or a name is invalid.
    """
    s = subjects or Subjects()
    out = Path(out_dir)
    for name in agents:
        if name in perms.RESERVED:
            raise ConfigError(f"agent name {name!r} is reserved for a bus service")
    services = [*sorted(agents), perms.COORDINATOR, perms.CLIENT, perms.ADMIN]
    credentials = {}
    written: dict[str, list[str]] = {}
    for service in services:
        directory = out / CREDENTIALS / service
        credential = load_or_create(directory, service, auth)
        credentials[service] = credential
        settings = {
            "name": service,
            "prefix": s.prefix,
            "replicas": replicas,
            "inbox_prefix": perms.inbox_prefix(service),
        }
        where = mount_path or str(directory.resolve())
        paths = write_credential(directory, credential, settings, mount_path=where)
        written[service] = [str(p) for p in paths]
    try:
        users = plan_users(agents, credentials, s)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    auth_path = out / AUTH_CONFIG
    _write_secret(auth_path, render_auth(users))
    server_path = out / SERVER_CONFIG
    server_path.write_text(render_server(server or ServerConfig()))
    return Bundle(str(out), str(server_path), str(auth_path), written)


def _user_lines(user: ServiceUser) -> list[str]:
    credential = user.credential
    if credential.kind == "nkey":
        who = [f"nkey: {_q(credential.identity)}"]
    else:
        who = [f"user: {_q(credential.identity)}", f"password: {_q(credential.secret.reveal())}"]
    lines = [f"      # {credential.service}", "      {", *(f"        {w}" for w in who)]
    p = user.permissions
    if p is not None:
        lines += [
            "        permissions: {",
            f"          publish: {{ allow: {_list(p.publish)} }}",
            f"          subscribe: {{ allow: {_list(p.subscribe)} }}",
        ]
        if p.allow_responses:
            lines.append("          allow_responses: true")
        lines.append("        }")
    lines.append("      }")
    return lines


def _list(items: Sequence[str]) -> str:
    inner = ",\n".join(f"            {_q(item)}" for item in items)
    return "[\n" + inner + "\n          ]"


def _q(text: str) -> str:
    # Quoted strings are never variables, so "$JS.API..." stays literal.
    return json.dumps(text)
