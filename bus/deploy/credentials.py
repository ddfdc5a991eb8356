"""One credential per service: an NKey (default) or a random password, kept in files of mode
0600 that a second render reuses, so re-rendering after adding an agent changes nobody else.

Secrets never reach a log or a ``repr``: they live in ``Secret``, whose ``repr`` is masked.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import msgspec
import nkeys

from bus.errors import ConfigError

AuthKind = Literal["nkey", "password"]
SECRET_MODE = 0o600


class Secret:
    """A secret string; ``str()`` gives it, ``repr()`` does not."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and secrets.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self._value)


class Credential(msgspec.Struct, frozen=True):
    """How one service authenticates.

    Attributes:
        service: the service name (agent name, ``coordinator``, ``client``, ``admin``).
        kind: ``nkey`` (``identity`` is the public ``U...`` key, ``secret`` the seed) or
            ``password`` (``identity`` is the user name, ``secret`` the password).
    """

    service: str
    kind: AuthKind
    identity: str
    secret: Secret


def new_credential(service: str, kind: AuthKind) -> Credential:
    """A fresh NKey user key pair or random password for ``service``."""
    if kind == "nkey":
        seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER).decode()
        return Credential(service, kind, _public_key(seed), Secret(seed))
    return Credential(service, kind, service, Secret(secrets.token_urlsafe(32)))


def seed_path(directory: Path, service: str) -> Path:
    return directory / f"{service}.nk"


def settings_path(directory: Path, service: str) -> Path:
    return directory / f"{service}.toml"


def load_or_create(directory: Path, service: str, kind: AuthKind) -> Credential:
    """The credential already written in ``directory`` for ``service``, else a new one.

    Raises:
        ConfigError: an existing file is unreadable or holds no valid secret.
    """
    if kind == "nkey":
        path = seed_path(directory, service)
        if path.exists():
            seed = _read(path).strip()
            try:
                return Credential(service, kind, _public_key(seed), Secret(seed))
            except Exception:
                raise ConfigError(f"{path}: not an NKey user seed") from None
    else:
        path = settings_path(directory, service)
        if path.exists():
            try:
                password = tomllib.loads(_read(path)).get("password")
            except tomllib.TOMLDecodeError:
                password = None
            if isinstance(password, str) and password:
                return Credential(service, kind, service, Secret(password))
    return new_credential(service, kind)


def write_secret(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 (also when the file already existed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, SECRET_MODE)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), SECRET_MODE)
        handle.write(text)


def write_credential(
    directory: Path, credential: Credential, settings: Mapping[str, object], *, mount_path: str
) -> list[Path]:
    """Write a service's secret files into ``directory``; return their paths.

    ``<service>.toml`` is a settings file for ``BUS_CONFIG``/``--config`` (``settings`` plus
    the credential); with NKeys the seed goes to ``<service>.nk``, named in the settings file
    as seen from ``mount_path`` (where the directory will be mounted in the service).
    """
    service = credential.service
    values = dict(settings)
    written = []
    if credential.kind == "nkey":
        seed_file = seed_path(directory, service)
        write_secret(seed_file, credential.secret.reveal() + "\n")
        written.append(seed_file)
        values["nkey_seed"] = f"{mount_path.rstrip('/')}/{seed_file.name}"
    else:
        values["user"] = credential.identity
        values["password"] = credential.secret.reveal()
    toml_file = settings_path(directory, service)
    write_secret(toml_file, _toml(values))
    written.append(toml_file)
    return written


def _public_key(seed: str) -> str:
    pair = nkeys.from_seed(bytearray(seed.encode()))
    try:
        return str(pair.public_key.decode())
    finally:
        with contextlib.suppress(AttributeError):
            pair.wipe()


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def _toml(values: Mapping[str, object]) -> str:
    lines = ["# agent-bus settings, rendered by `bus deploy nats-config` (secret: mode 0600)"]
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise TypeError(f"unsupported settings value for {key!r}")
        # A JSON string is a valid TOML basic string.
        rendered = str(value) if isinstance(value, int) else msgspec.json.encode(value).decode()
        lines.append(f"{key} = {rendered}")
    return "\n".join(lines) + "\n"
