"""Shared by the deploy tests: a nats-server running the rendered config, and connections
authenticated with the rendered credentials (nats-py directly, to see each permission)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import nats
from nats.aio.client import Client as NATS

from bus.deploy.permissions import inbox_prefix
from bus.deploy.render import Bundle

ACK_V2 = "feature_flags { js_ack_fc_v2: true }"


def secured_config(bundle: Bundle, *, ack_v2: bool = False) -> str:
    """Extra server config text: the rendered accounts, optionally the v2 ack format."""
    text = Path(bundle.auth_config).read_text()
    return text + (ACK_V2 + "\n" if ack_v2 else "")


class Session:
    """One authenticated connection that records the permission errors the server sends."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.errors: list[str] = []
        self._changed = asyncio.Event()
        self.nc: NATS | None = None

    async def on_error(self, exc: Exception) -> None:
        self.errors.append(str(exc))
        self._changed.set()

    @property
    def client(self) -> NATS:
        assert self.nc is not None
        return self.nc

    def violations(self) -> list[str]:
        return [e for e in self.errors if "violation" in e.lower()]

    async def refused(self, subject: str, timeout: float = 5.0) -> None:
        """Wait until the server reports a permissions violation naming ``subject``."""
        deadline = time.monotonic() + timeout
        needle = f'"{subject}"'.lower()  # nats-py lower-cases the server's error text
        while not any(needle in e.lower() for e in self.violations()):
            left = deadline - time.monotonic()
            assert left > 0, f"{self.service}: no violation for {subject}: {self.errors}"
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    async def publish_refused(self, subject: str, payload: bytes = b"") -> None:
        await self.client.publish(subject, payload)
        await self.client.flush()
        await self.refused(subject)

    async def subscribe_refused(self, subject: str, queue: str = "") -> list[bytes]:
        """Try to subscribe; return a list that collects anything delivered anyway."""
        got: list[bytes] = []

        async def collect(msg: object) -> None:
            got.append(getattr(msg, "data", b""))

        await self.client.subscribe(subject, queue=queue, cb=collect)
        await self.client.flush()
        await self.refused(subject)
        return got

    async def close(self) -> None:
        if self.nc is not None:
            await self.nc.close()


async def login(url: str, bundle: Bundle, service: str) -> Session:
    """Connect as ``service`` with its rendered NKey seed and private inbox prefix."""
    session = Session(service)
    seed = Path(bundle.out_dir) / "credentials" / service / f"{service}.nk"
    session.nc = await nats.connect(
        url,
        nkeys_seed=str(seed),
        inbox_prefix=inbox_prefix(service),
        error_cb=session.on_error,
        allow_reconnect=False,
        name=service,
    )
    return session
