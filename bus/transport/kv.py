"""A small key-value interface over NATS KV, with our errors instead of nats-py's.

Middleware (shared breaker, limiter, cache) and the coordinator's run store talk to
``Bucket``; only this module knows the nats-py KV API.
"""

from __future__ import annotations

import base64
import hashlib

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js.kv import KeyValue

from bus.errors import BusError, TransientError
from bus.transport.publisher import Outbound, StreamRejectedError, stream_publisher

_EXPECTED_LAST = "Nats-Expected-Last-Subject-Sequence"
_TTL = "Nats-TTL"
_UNREACHABLE = (nats.errors.Error, TimeoutError, OSError)
_WRONG_LAST = (10071, 10164)


class KeyExistsError(BusError):
    """``create`` found the key already present."""


class RevisionMismatchError(BusError):
    """``update`` lost a compare-and-set race: re-read and try again."""


class Entry(msgspec.Struct, frozen=True):
    """A value and the revision it was read at (pass it to ``update`` for CAS)."""

    key: str
    value: bytes
    revision: int


def safe_key(text: str) -> str:
    """A valid KV key for arbitrary text: kept when already valid, else a stable hash."""
    if text and all(c.isalnum() or c in "-_=." for c in text) and not text.startswith("."):
        return text
    digest = hashlib.blake2b(text.encode(), digest_size=20).digest()
    return base64.b32encode(digest).decode().rstrip("=").lower()


class Bucket:
    """One KV bucket."""

    __slots__ = ("_kv", "_publisher", "name")

    def __init__(self, nc: NATS, kv: KeyValue, name: str) -> None:
        self._publisher = stream_publisher(nc)
        self._kv = kv
        self.name = name

    async def get(self, key: str) -> Entry | None:
        """The current value, or ``None`` when absent or deleted.

        Raises:
            TransientError: NATS did not answer (a disconnect, a failover).
        """
        try:
            entry = await self._kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            return None
        except _UNREACHABLE as exc:
            raise self._unreachable(exc) from None
        if entry.value is None:
            return None
        return Entry(key, entry.value, entry.revision or 0)

    async def create(self, key: str, value: bytes, *, ttl: float | None = None) -> int:
        """Write only if absent; return the revision. Raises ``KeyExistsError``."""
        try:
            return int(await self._kv.create(key, value, msg_ttl=ttl))
        except nats.js.errors.KeyWrongLastSequenceError:
            raise KeyExistsError(key) from None
        except nats.js.errors.APIError as exc:
            if exc.err_code in _WRONG_LAST:
                raise KeyExistsError(key) from None
            raise self._unreachable(exc) from None
        except _UNREACHABLE as exc:
            raise self._unreachable(exc) from None

    async def update(
        self, key: str, value: bytes, revision: int, *, ttl: float | None = None
    ) -> int:
        """Compare-and-set against ``revision``. Raises ``RevisionMismatchError``."""
        return await self._publish(key, value, expect=revision, ttl=ttl)

    async def put(self, key: str, value: bytes, *, ttl: float | None = None) -> int:
        """Write unconditionally; return the revision."""
        return await self._publish(key, value, expect=None, ttl=ttl)

    def put_message(self, key: str, value: bytes, *, ttl: float | None = None) -> Outbound:
        """The message that ``put`` publishes, to send with others (``Wire.persist_all``)."""
        headers = {_TTL: str(int(ttl))} if ttl is not None else None  # whole seconds
        return Outbound(f"$KV.{self.name}.{key}", value, headers)

    async def _publish(
        self, key: str, value: bytes, *, expect: int | None, ttl: float | None
    ) -> int:
        # nats-py's KeyValue.update/put take no per-message TTL; publish to the KV subject.
        message = self.put_message(key, value, ttl=ttl)
        headers = message.headers
        if expect is not None:
            headers = {**(headers or {}), _EXPECTED_LAST: str(expect)}
        try:
            (ack,) = await self._publisher.persist(
                [Outbound(message.subject, message.data, headers)]
            )
        except StreamRejectedError as exc:
            if exc.err_code in _WRONG_LAST:
                raise RevisionMismatchError(key) from None
            raise self._unreachable(exc) from None
        except (TransientError, *_UNREACHABLE) as exc:
            raise self._unreachable(exc) from None
        return ack.seq

    def _unreachable(self, exc: BaseException) -> TransientError:
        return TransientError(f"KV {self.name}: {exc or type(exc).__name__}")

    async def delete(self, key: str) -> None:
        await self._kv.delete(key)

    async def keys(self) -> list[str]:
        """Every live key (empty list for an empty bucket)."""
        try:
            return list(await self._kv.keys())
        except nats.js.errors.NoKeysError:
            return []
