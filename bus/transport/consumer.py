"""Durable pull consumers that keep delivering through server restarts.

``PullConsumer`` creates (or updates) a durable consumer, fetches in batches sized by the
caller, and wraps each message in a ``Delivery`` so the runtime never touches nats-py objects.
A watchdog recreates the pull subscription when fetches keep failing or after a reconnect
(nats.py#504: a pull subscription can stop delivering after a server restart).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence

import anyio
import msgspec
import nats.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import DEFAULT_PREFIX, AckPolicy, ConsumerConfig, DeliverPolicy

log = structlog.get_logger("bus.transport")

FETCH_WAIT = 1.0
STALL_LIMIT = 5
V1_ACK_TOKENS = 9
LOST_PULL_MARGIN = 0.5
_ENDED = frozenset({"404", "408"})  # "No Messages" and "Request Timeout": a pull's normal end


class ConsumerSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A durable pull consumer.

    Attributes:
        stream: the stream it reads.
        durable: its name, shared by every replica that binds to it.
        subjects: filter subjects.
        ack_wait: seconds before an unacked message is redelivered.
        max_deliver: deliveries before the server gives up (-1: unlimited).
        new_only: start at new messages (events) rather than all (tasks).
        max_ack_pending: messages in flight across all replicas.
    """

    stream: str
    durable: str
    subjects: tuple[str, ...]
    ack_wait: float = 30.0
    max_deliver: int = -1
    new_only: bool = False
    max_ack_pending: int = 1000


class Delivery:
    """One JetStream message and the controls to settle it."""

    __slots__ = ("_msg", "data", "delivered", "headers", "stream_seq", "subject")

    def __init__(self, msg: Msg) -> None:
        self._msg = msg
        self.data: bytes = msg.data
        self.subject: str = msg.subject
        self.headers: dict[str, str] = dict(msg.headers or {})
        self.delivered, self.stream_seq = _delivery_counts(msg.reply)

    async def ack(self) -> None:
        """Acknowledge (a work-queue stream then drops the message).

        Not confirmed by a round trip: a lost ack only means a redelivery, which the
        idempotency record answers without running the handler again.
        """
        await _settle(self._msg.ack())

    async def nak(self, delay: float | None = None) -> None:
        await _settle(self._msg.nak(delay=delay))

    async def in_progress(self) -> None:
        await _settle(self._msg.in_progress())

    async def term(self) -> None:
        await _settle(self._msg.term())


def _delivery_counts(ack_subject: str) -> tuple[int, int]:
    """Times delivered and stream sequence, from a JetStream ack subject.

    v1 is ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.
    <pending>`` (9 tokens); v2 puts a domain and an account hash before the stream. nats-py's
    ``msg.metadata`` also parses the time into a datetime and builds three dataclasses: 10 µs a
    message, for fields the bus never reads.
    """
    tokens = ack_subject.split(".")
    at = 4 if len(tokens) == V1_ACK_TOKENS else 6
    try:
        return int(tokens[at]) or 1, int(tokens[at + 1])
    except (IndexError, ValueError):
        return 1, 0


async def _settle(awaitable: object) -> None:
    try:
        await awaitable  # type: ignore[misc]
    except (nats.errors.Error, TimeoutError, OSError) as exc:
        # The server redelivers what we could not settle; idempotency records absorb it.
        log.warning("could not settle message", error=str(exc) or type(exc).__name__)


class PullConsumer:
    """Fetch from one durable consumer, recreating the subscription when it stalls.

    Pull requests are sent and answered here rather than through nats-py's ``fetch``, which
    per message starts two tasks, arms a timer and draws a uuid4, and ends an idle pull in a
    race between its timer and the server's answer (nats-io/nats.py#986). Each request is a
    no-wait pull with an expiry, which the server holds until the first message and then
    ends, once what is there is delivered, with "404 No Messages" (or at expiry with "408
    Request Timeout"). Requests go out one at a time, each with its own reply subject under
    one inbox subscription, so the end of an earlier request is told from the end of this one
    by its subject. Deliveries arrive on the stream's subject whatever request they answer,
    and all go to one buffer that fetches empty first.
    """

    def __init__(self, nc: NATS, spec: ConsumerSpec) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self.spec = spec
        self._sub: Subscription | None = None
        self._failures = 0
        self._reconnects_seen = 0
        self._next_subject = f"{DEFAULT_PREFIX}.CONSUMER.MSG.NEXT.{spec.stream}.{spec.durable}"
        self._inbox = ""
        self._requests = 0
        self._open_reply = ""  # the reply subject of the request in flight
        self._open: asyncio.Future[str] | None = None  # its end: "" (batch full) or a status
        self._still_due = 0  # messages it may still deliver
        self._buffer: deque[Msg] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None

    def _config(self) -> ConsumerConfig:
        subjects = list(self.spec.subjects)
        return ConsumerConfig(
            # With a name the create request goes to CONSUMER.CREATE.<stream>.<name>.<filter>,
            # a subject NATS permissions can pin to the agent's own tasks.
            name=self.spec.durable,
            durable_name=self.spec.durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.spec.ack_wait,
            max_deliver=self.spec.max_deliver,
            max_ack_pending=self.spec.max_ack_pending,
            deliver_policy=DeliverPolicy.NEW if self.spec.new_only else DeliverPolicy.ALL,
            filter_subject=subjects[0] if len(subjects) == 1 else None,
            filter_subjects=subjects if len(subjects) > 1 else None,
        )

    async def ensure(self) -> None:
        """Create or update the consumer and subscribe a fresh inbox for its deliveries."""
        # CONSUMER.CREATE without an action creates, or updates a compatible existing one.
        await self._js.add_consumer(self.spec.stream, self._config())
        self._inbox = self._nc.new_inbox()
        self._sub = await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_message)
        self._reconnects_seen = self._nc.stats["reconnects"]
        self._failures = 0

    async def fetch(self, batch: int, wait: float = FETCH_WAIT) -> Sequence[Delivery]:
        """Up to ``batch`` messages, waiting at most ``wait`` seconds; empty on timeout."""
        if self._sub is None or self._nc.stats["reconnects"] != self._reconnects_seen:
            await self._recreate()
        if not self._buffer:
            try:
                status = await self._pull(batch, wait)
            except (nats.errors.Error, OSError) as exc:
                status = str(exc) or type(exc).__name__
            if status and status not in _ENDED and not self._buffer:
                self._failures += 1
                if self._failures >= STALL_LIMIT:
                    log.warning("pull subscription stalled, recreating", error=status)
                    self._sub = None
                await anyio.sleep(min(0.1 * self._failures, 1.0))
                return ()
        self._failures = 0
        buffer = self._buffer
        return [Delivery(buffer.popleft()) for _ in range(min(batch, len(buffer)))]

    async def _pull(self, batch: int, wait: float) -> str:
        """Send one pull request and wait for its end; returns how it ended ("" when the
        batch was filled, else the status: "404", "408", or an error)."""
        self._requests += 1
        reply = self._open_reply = f"{self._inbox}.{self._requests}"
        loop = self._loop
        if loop is None:  # looked up once: a getpid() call per lookup on Python 3.11
            loop = self._loop = asyncio.get_running_loop()
        ended: asyncio.Future[str] = loop.create_future()
        self._open = ended
        self._still_due = batch
        request = b'{"batch":%d,"expires":%d,"no_wait":true}' % (batch, int(wait * 1e9))
        # The server ends the request at its expiry; past that plus a margin it was lost (a
        # reconnect, a restarted server).
        lost = loop.call_later(wait + LOST_PULL_MARGIN, _end, ended, "no answer to the pull")
        try:
            await self._nc.publish(self._next_subject, request, reply=reply)
            return await ended
        finally:
            lost.cancel()
            self._open = None

    async def _on_message(self, msg: Msg) -> None:
        if msg.reply:  # a delivery: its reply subject is the ack subject
            self._buffer.append(msg)
            self._still_due -= 1
            if self._still_due <= 0 and self._open is not None:
                _end(self._open, "")
            return
        # A status on the reply subject of a request: the end of it, or a heartbeat (100).
        headers = msg.headers or {}
        status = headers.get("Status", "")
        if status == "100" or msg.subject != self._open_reply:
            return  # an earlier request's end arriving late says nothing about this one
        if self._open is not None:
            ended = status if status in _ENDED else f"{status} {headers.get('Description', '')}"
            _end(self._open, ended)

    async def _recreate(self) -> None:
        while True:
            await self.close()
            try:
                await self.ensure()
                return
            except (nats.errors.Error, OSError, TimeoutError) as exc:
                log.warning("cannot bind consumer yet", consumer=self.spec.durable, error=str(exc))
                await anyio.sleep(0.5)

    async def close(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(nats.errors.Error, OSError):
                await self._sub.unsubscribe()
            self._sub = None


def _end(pull: asyncio.Future[str], how: str) -> None:
    if not pull.done():
        pull.set_result(how)
