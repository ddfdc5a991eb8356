"""Connect to NATS from ``Settings``: auth, TLS, reconnect forever, logged state changes.

nats-py's own exceptions are translated to ours here.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

import nats
import structlog
from nats.aio.client import Client as NATS

from bus.errors import ConnectionFailedError
from bus.settings import Settings

log = structlog.get_logger("bus.transport")


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """An SSL context from the settings' CA/cert/key (``None`` without TLS)."""
    if not settings.uses_tls:
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.tls_ca)
    if settings.tls_cert:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


async def connect(settings: Settings, *, name: str | None = None) -> NATS:
    """A connected client that reconnects forever with backoff.

    Raises:
        ConnectionFailedError: no server accepted a connection within
            ``settings.connect_timeout`` (the message names the URLs and the last error).
    """
    nc = NATS()
    first_connect = True
    last_error: list[BaseException] = []

    async def on_error(exc: Exception) -> None:
        if first_connect:
            last_error.append(exc)
        else:
            log.warning("nats error", error=str(exc) or type(exc).__name__)

    async def on_disconnected() -> None:
        if not first_connect and not nc.is_closed and not nc.is_draining:
            log.warning("nats disconnected")

    async def on_reconnected() -> None:
        url = nc.connected_url.netloc if nc.connected_url else "?"
        log.info("nats reconnected", server=url)

    options: dict[str, Any] = {
        "servers": list(settings.servers),
        "name": name or settings.name,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "connect_timeout": min(settings.connect_timeout, 2.0),
        "error_cb": on_error,
        "disconnected_cb": on_disconnected,
        "reconnected_cb": on_reconnected,
        "pending_size": 64 * 1024 * 1024,
        "drain_timeout": 10,
    }
    if settings.user:
        options["user"], options["password"] = settings.user, settings.password
    if settings.inbox_prefix:
        options["inbox_prefix"] = settings.inbox_prefix
    if settings.token:
        options["token"] = settings.token
    if settings.nkey_seed:
        options["nkeys_seed"] = settings.nkey_seed
    if settings.creds:
        options["user_credentials"] = settings.creds
    context = tls_context(settings)
    if context is not None:
        options["tls"] = context
        options["tls_hostname"] = None
    try:
        await asyncio.wait_for(nc.connect(**options), settings.connect_timeout)
    except (TimeoutError, OSError, nats.errors.Error) as exc:
        await _abandon(nc)
        reason = last_error[-1] if last_error else exc
        detail = str(reason) or type(reason).__name__
        urls = ", ".join(settings.servers)
        raise ConnectionFailedError(f"cannot connect to NATS at {urls}: {detail}") from None
    first_connect = False
    return nc


async def _abandon(nc: NATS) -> None:
    with contextlib.suppress(TimeoutError, OSError, nats.errors.Error):
        await asyncio.wait_for(nc.close(), 1.0)
