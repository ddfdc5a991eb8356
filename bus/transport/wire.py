"""Publish, subscribe and request on NATS, with nats-py's errors translated to ours."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from bus.errors import BusError, ConnectionFailedError, NoAgentError, TransientError
from bus.transport.publisher import Outbound, PubAck, stream_publisher

Message = Msg
"""A core message as nats-py delivers it (``subject``, ``data``, ``headers``, ``reply``); the
direct path takes it as it is, without an ``Inbound`` wrapper per request."""


async def answer(msg: Msg, data: bytes, headers: dict[str, str] | None = None) -> None:
    """Publish ``data`` on the reply subject of ``msg`` (nothing when it has none).

    Raises:
        TransientError: the reply could not be sent.
    """
    if not msg.reply:
        return
    try:
        await msg._client.publish(msg.reply, data, headers=headers)
    except (nats.errors.Error, OSError) as exc:
        raise TransientError(f"cannot respond: {exc}") from None


class Inbound:
    """A core message that may be answered."""

    __slots__ = ("_msg", "data", "headers", "subject")

    def __init__(self, msg: Msg) -> None:
        self._msg = msg
        self.data: bytes = msg.data
        self.subject: str = msg.subject
        self.headers: dict[str, str] | None = msg.headers

    @property
    def can_respond(self) -> bool:
        return bool(self._msg.reply)

    async def respond(self, data: bytes, headers: dict[str, str] | None = None) -> None:
        await answer(self._msg, data, headers)


class Wire:
    """The runtime's and the coordinator's window on one NATS connection."""

    __slots__ = ("_publisher", "js", "nc")

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self._publisher = stream_publisher(nc)

    @property
    def connected(self) -> bool:
        return bool(self.nc.is_connected)

    async def publish(
        self, subject: str, data: bytes, headers: dict[str, str] | None = None
    ) -> None:
        """Core publish (at most once)."""
        try:
            await self.nc.publish(subject, data, headers=headers)
        except (nats.errors.Error, OSError) as exc:
            raise TransientError(f"publish to {subject} failed: {exc}") from None

    async def persist(
        self, subject: str, data: bytes, *, msg_id: str, headers: dict[str, str] | None = None
    ) -> bool:
        """Publish into a stream and wait for its ack; ``msg_id`` deduplicates.

        Returns whether the stream already had a message with that id.
        """
        hdrs = {**(headers or {}), "Nats-Msg-Id": msg_id}
        (ack,) = await self._persist([Outbound(subject, data, hdrs)], timeout=5.0)
        return ack.duplicate

    async def persist_all(self, messages: Sequence[Outbound], *, timeout: float = 5.0) -> None:
        """Publish ``messages`` into their streams at once; return when every one is stored.

        One round trip for all of them and no task per message (``bus.transport.publisher``):
        every durable task and every workflow step comes through here.

        Raises:
            TransientError: a message was not stored (no stream, an error, no ack in time);
                the others may have been. Publish them all again (give each a
                ``Nats-Msg-Id`` to make that safe).
        """
        await self._persist(messages, timeout=timeout)

    async def _persist(self, messages: Sequence[Outbound], *, timeout: float) -> list[PubAck]:
        try:
            return await self._publisher.persist(messages, timeout=timeout)
        except (TransientError, nats.errors.Error, OSError) as exc:
            what = ", ".join(m.subject for m in messages)
            raise TransientError(f"publish to {what} failed: {exc or type(exc).__name__}") from None

    async def subscribe(
        self,
        subject: str,
        handler: Callable[[Inbound], Awaitable[None]],
        *,
        queue: str = "",
    ) -> Subscription:
        """A core subscription; ``handler`` is awaited per message, in order."""

        async def on_message(msg: Msg) -> None:
            await handler(Inbound(msg))

        return await self.nc.subscribe(subject, queue=queue, cb=on_message)

    async def request(
        self,
        subject: str,
        data: bytes,
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> tuple[bytes, dict[str, str]]:
        """Core request/reply.

        Raises:
            NoAgentError: nobody subscribes to ``subject``.
            BusTimeoutError-like ``TransientError``: no answer within ``timeout``.
        """
        from bus.errors import BusTimeoutError

        try:
            msg = await self.nc.request(subject, data, timeout=timeout, headers=headers)
        except nats.errors.NoRespondersError:
            raise NoAgentError(f"no agent is serving {subject}") from None
        except nats.errors.TimeoutError:
            raise BusTimeoutError(f"no answer on {subject} within {timeout:g}s") from None
        except nats.errors.ConnectionClosedError:
            raise ConnectionFailedError("the NATS connection is closed") from None
        except nats.errors.Error as exc:
            raise BusError(f"request on {subject} failed: {exc}") from None
        return msg.data, dict(msg.headers or {})

    async def stream_message(self, stream: str, seq: int) -> tuple[str, bytes, dict[str, str]]:
        """Subject, data and headers of message ``seq`` in ``stream``."""
        raw = await self.js.get_msg(stream, seq)
        return raw.subject or "", raw.data or b"", dict(raw.headers or {})

    async def last_message(self, stream: str, subject: str) -> bytes | None:
        """The data of the last message on ``subject`` in ``stream`` (a direct get, served
        by any replica), or ``None`` when there is none.

        Raises:
            TransientError: the stream did not answer.
        """
        try:
            raw = await self.js.get_msg(stream, subject=subject, direct=True)
        except nats.js.errors.NotFoundError:
            return None
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise TransientError(f"read {subject}: {exc or type(exc).__name__}") from None
        return raw.data or b""

    async def delete_stream_message(self, stream: str, seq: int) -> None:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await self.js.delete_msg(stream, seq)

    async def flush(self) -> None:
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await self.nc.flush(timeout=5)

    async def drain(self) -> None:
        """Stop subscriptions, deliver what is pending, flush publishes, close.

        nats-py drains a subscription by waiting until its callback has taken every pending
        message, so every subscription of the bus has one (pull consumers included).
        """
        with contextlib.suppress(nats.errors.Error, TimeoutError, OSError):
            await self.nc.drain()

    async def close(self) -> None:
        with contextlib.suppress(nats.errors.Error, TimeoutError, OSError):
            await self.nc.close()
