"""Publishes into JetStream streams, with the acks read here: one inbox per connection.

nats-py's ``js.publish`` makes each publish a core request: a random token (an
``os.urandom`` call), a task for ``wait_for`` and a timer; its ``publish_async`` never
resolves a publish the stream refused (nats-io/nats.py#985), so a lost compare-and-set
would look like a five-second timeout. Here every publish of a connection gets a numbered
reply subject under one inbox subscription, its ack is decoded with msgspec, and a refusal
comes back as ``StreamRejectedError`` carrying the server's error code.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from weakref import WeakKeyDictionary

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from bus.errors import TransientError


class ApiError(msgspec.Struct, frozen=True):
    """The ``error`` of a JetStream API answer."""

    code: int = 0
    err_code: int = 0
    description: str = ""


class PubAck(msgspec.Struct, frozen=True):
    """A stream's answer to a publish."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: ApiError | None = None


class Outbound(msgspec.Struct, frozen=True):
    """One message to publish into a stream."""

    subject: str
    data: bytes
    headers: dict[str, str] | None = None


class StreamRejectedError(TransientError):
    """The stream answered a publish with an error (``err_code`` is JetStream's)."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(f"{error.description or 'refused'} ({error.err_code})")
        self.err_code = error.err_code


class NoStreamError(TransientError):
    """No stream takes messages on the subject (or JetStream is not running)."""


class AckTimeoutError(TransientError):
    """No ack came back in time: the message may or may not be stored."""


_decode_ack = msgspec.json.Decoder(PubAck).decode


class StreamPublisher:
    """Publishes of one connection and their acks.

    Use ``stream_publisher(nc)``: one per connection, subscribed on first use (the
    subscription survives reconnects with the connection).
    """

    def __init__(self, nc: NATS) -> None:
        self._nc = nc
        self._prefix = ""
        self._sub: Subscription | None = None
        self._numbers = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[PubAck]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribing = asyncio.Lock()

    async def persist(self, messages: Sequence[Outbound], *, timeout: float = 5.0) -> list[PubAck]:
        """Publish ``messages`` at once; return their acks once every one is stored.

        Raises:
            StreamRejectedError: a stream refused a message (the others may be stored).
            NoStreamError: no stream takes a message's subject.
            AckTimeoutError: an ack did not come within ``timeout`` seconds.
            nats.errors.Error, OSError: the publish could not be sent.
        """
        loop = self._loop
        if loop is None:  # looked up once: a getpid() call per lookup on Python 3.11
            loop = self._loop = asyncio.get_running_loop()
        if self._sub is None:
            await self._subscribe()
        publish, waiting, prefix = self._nc.publish, self._waiting, self._prefix
        acks: list[asyncio.Future[PubAck]] = []
        tokens: list[str] = []
        expiry = loop.call_later(timeout, _expire, acks)
        try:
            for message in messages:
                token = str(next(self._numbers))
                ack: asyncio.Future[PubAck] = loop.create_future()
                waiting[token] = ack
                tokens.append(token)
                acks.append(ack)
                await publish(message.subject, message.data, prefix + token, message.headers)
            return [await ack for ack in acks]
        finally:
            expiry.cancel()
            for token in tokens:
                waiting.pop(token, None)
            for ack in acks:
                if not ack.done():
                    ack.cancel()
                elif not ack.cancelled():
                    ack.exception()  # retrieved, so an error nobody awaited is not logged

    async def _subscribe(self) -> None:
        async with self._subscribing:  # two first publishes at once subscribe one inbox
            if self._sub is None:
                prefix = f"{self._nc.new_inbox()}."
                self._sub = await self._nc.subscribe(f"{prefix}*", cb=self._on_ack)
                self._prefix = prefix

    async def _on_ack(self, msg: Msg) -> None:
        ack = self._waiting.pop(msg.subject[len(self._prefix) :], None)
        if ack is None or ack.done():
            return  # an ack that came after its publish gave up
        headers = msg.headers
        if headers and headers.get("Status") == "503":
            ack.set_exception(NoStreamError("no stream takes this subject (is JetStream up?)"))
            return
        try:
            answer = _decode_ack(msg.data)
        except msgspec.DecodeError as exc:
            ack.set_exception(TransientError(f"unreadable publish ack: {exc}"))
            return
        if answer.error is not None:
            ack.set_exception(StreamRejectedError(answer.error))
        else:
            ack.set_result(answer)


def _expire(acks: list[asyncio.Future[PubAck]]) -> None:
    for ack in acks:
        if not ack.done():
            ack.set_exception(AckTimeoutError("no ack from the stream in time"))


_publishers: WeakKeyDictionary[NATS, StreamPublisher] = WeakKeyDictionary()


def stream_publisher(nc: NATS) -> StreamPublisher:
    """The publisher of connection ``nc``."""
    found = _publishers.get(nc)
    if found is None:
        found = _publishers[nc] = StreamPublisher(nc)
    return found
