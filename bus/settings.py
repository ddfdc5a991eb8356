"""Connection settings: one frozen Struct, built from flags, ``BUS_*`` environment or a file.

The library never reads ``os.environ``; the CLI passes the mapping in.

Precedence (later wins): defaults, config file, environment, command-line flags.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from bus.errors import ConfigError

DEFAULT_URL = "nats://127.0.0.1:4222"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """How to reach NATS and name things on it.

    Attributes:
        servers: NATS URLs; several for a cluster (the client fails over between them).
        user, password: user/password authentication.
        token: token authentication.
        nkey_seed: path to an NKey seed file (``SU...``).
        creds: path to a ``.creds`` file (JWT + seed).
        tls_ca, tls_cert, tls_key: TLS files; a CA alone verifies the server, cert+key add
            client authentication.
        name: client connection name shown by the server.
        inbox_prefix: the connection's reply-inbox prefix; least-privilege deployments give
            every service its own (``_INBOX.<service>``) so no one reads another's answers.
        prefix: subject prefix, so several buses can share one NATS.
        replicas: stream and bucket replicas (3 on a JetStream cluster).
        connect_timeout: seconds to wait for the first connection.
        explicit: true when the URL came from the user (flag, environment or file): then no
            embedded server is ever started in its place.
    """

    servers: tuple[str, ...] = (DEFAULT_URL,)
    user: str | None = None
    password: str | None = None
    token: str | None = None
    nkey_seed: str | None = None
    creds: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    name: str = "agent-bus"
    inbox_prefix: str | None = None
    prefix: str = "bus"
    replicas: int = 1
    connect_timeout: float = 2.0
    explicit: bool = False

    @property
    def uses_tls(self) -> bool:
        return bool(self.tls_ca or self.tls_cert) or any(
            s.startswith("tls://") for s in self.servers
        )

    def with_overrides(self, **values: Any) -> Settings:
        """A copy with every non-``None`` value replaced."""
        changes = {k: v for k, v in values.items() if v is not None}
        if "servers" in changes:
            changes["servers"] = _split_urls(changes["servers"])
            changes.setdefault("explicit", True)
        return msgspec.structs.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str], prefix: str = "BUS_") -> Settings:
        """Settings from ``BUS_NATS_URL``, ``BUS_NATS_USER``, ``BUS_NATS_PASSWORD``,
        ``BUS_NATS_TOKEN``, ``BUS_NATS_NKEY``, ``BUS_NATS_CREDS``, ``BUS_TLS_CA``,
        ``BUS_TLS_CERT``, ``BUS_TLS_KEY``, ``BUS_NATS_INBOX_PREFIX``, ``BUS_PREFIX``,
        ``BUS_REPLICAS`` and ``BUS_CONFIG`` (a TOML file read first)."""
        base = (
            cls.from_file(environ[prefix + "CONFIG"]) if environ.get(prefix + "CONFIG") else cls()
        )
        names = {
            "NATS_URL": "servers",
            "NATS_USER": "user",
            "NATS_PASSWORD": "password",
            "NATS_TOKEN": "token",
            "NATS_NKEY": "nkey_seed",
            "NATS_CREDS": "creds",
            "TLS_CA": "tls_ca",
            "TLS_CERT": "tls_cert",
            "TLS_KEY": "tls_key",
            "NATS_INBOX_PREFIX": "inbox_prefix",
            "PREFIX": "prefix",
            "REPLICAS": "replicas",
        }
        values: dict[str, Any] = {}
        for env_name, field in names.items():
            raw = environ.get(prefix + env_name)
            if raw:
                values[field] = raw
        if "replicas" in values:
            values["replicas"] = _int(values["replicas"], prefix + "REPLICAS")
        return base.with_overrides(**values)

    @classmethod
    def from_file(cls, path: str | Path) -> Settings:
        """Settings from a TOML file whose keys are this Struct's field names
        (``servers`` may be a string or a list)."""
        try:
            data = tomllib.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
        if "servers" in data:
            data["servers"] = _split_urls(data["servers"])
            data["explicit"] = True
        try:
            return msgspec.convert(data, cls)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{path}: {exc}") from None


def _split_urls(value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    urls = tuple(u.strip() for u in items if u.strip())
    if not urls:
        raise ConfigError("no NATS URL given")
    return urls


def _int(raw: str, name: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
