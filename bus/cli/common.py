"""What every command shares: connection flags, settings, output, one-line errors."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import anyio

from bus import codec
from bus.errors import BusError, ConfigError
from bus.settings import Settings

T = TypeVar("T")


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    """Flags for reaching NATS; each also reads a ``BUS_*`` variable."""
    group = parser.add_argument_group("connection (also BUS_* environment, BUS_CONFIG file)")
    group.add_argument(
        "--nats",
        metavar="URL[,URL]",
        help="NATS server URLs (BUS_NATS_URL; default nats://127.0.0.1:4222)",
    )
    group.add_argument("--user", help="NATS user (BUS_NATS_USER)")
    group.add_argument("--password", help="NATS password (BUS_NATS_PASSWORD)")
    group.add_argument("--token", help="NATS token (BUS_NATS_TOKEN)")
    group.add_argument("--nkey", metavar="SEED_FILE", help="NKey seed file (BUS_NATS_NKEY)")
    group.add_argument("--creds", metavar="FILE", help="NATS .creds file (BUS_NATS_CREDS)")
    group.add_argument("--tls-ca", metavar="FILE", help="CA to verify the server (BUS_TLS_CA)")
    group.add_argument("--tls-cert", metavar="FILE", help="client certificate (BUS_TLS_CERT)")
    group.add_argument("--tls-key", metavar="FILE", help="client key (BUS_TLS_KEY)")
    group.add_argument("--config", metavar="FILE", help="TOML settings file (BUS_CONFIG)")
    group.add_argument("--prefix", help="subject prefix (BUS_PREFIX; default 'bus')")


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable JSON output")


def settings_from(args: argparse.Namespace, environ: dict[str, str] | None = None) -> Settings:
    """Settings from (in rising precedence) the config file, ``BUS_*`` variables and flags."""
    env = dict(os.environ if environ is None else environ)
    if getattr(args, "config", None):
        env["BUS_CONFIG"] = args.config
    base = Settings.from_env(env)
    return base.with_overrides(
        servers=getattr(args, "nats", None),
        user=getattr(args, "user", None),
        password=getattr(args, "password", None),
        token=getattr(args, "token", None),
        nkey_seed=getattr(args, "nkey", None),
        creds=getattr(args, "creds", None),
        tls_ca=getattr(args, "tls_ca", None),
        tls_cert=getattr(args, "tls_cert", None),
        tls_key=getattr(args, "tls_key", None),
        prefix=getattr(args, "prefix", None),
    )


def run_async(main: Callable[[], Awaitable[T]]) -> T:
    """Run an async command body on anyio (asyncio backend)."""
    return anyio.run(main)


def print_json(value: Any) -> None:
    sys.stdout.write(codec.encode_json(value).decode() + "\n")
    sys.stdout.flush()


def parse_json_arg(text: str) -> Any:
    """A JSON command-line argument; ``@file`` reads it from a file, ``-`` from stdin."""
    from bus.errors import ConfigError

    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        try:
            with open(text[1:]) as handle:
                text = handle.read()
        except OSError as exc:
            raise ConfigError(f"cannot read {text[1:]}: {exc.strerror}") from None
    return codec.decode_json_text(text)


def one_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error a user should read (no traceback for one ``BusError``), else the group."""
    leaves = list(_leaves(group))
    if len(leaves) == 1 and isinstance(leaves[0], BusError):
        return leaves[0]
    if len(leaves) == 1 and isinstance(leaves[0], OSError):  # e.g. the metrics port is taken
        return ConfigError(str(leaves[0]))
    return group


def _leaves(error: BaseException) -> Iterator[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _leaves(inner)
    else:
        yield error
