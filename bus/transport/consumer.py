"""Durable pull consumers that keep delivering through server restarts.

``PullConsumer`` creates (or updates) a durable consumer, fetches in batches sized by the
caller, and wraps each message in a ``Delivery`` so the runtime never touches nats-py objects.
A watchdog recreates the pull subscription when fetches keep failing or after a reconnect
(nats.py#504: a pull subscription can stop delivering after a server restart).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import anyio
import msgspec
import nats.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

log = structlog.get_logger("bus.transport")

FETCH_WAIT = 1.0
STALL_LIMIT = 5
V1_ACK_TOKENS = 9
STALE_STATUS_GRACE = 0.02
"""Seconds a fetch that timed out empty waits before the next one may start.

The server ends an expired pull with a "408 Request Timeout" 100 µs before nats-py's own
timer fires, so the status can arrive just after the fetch gave up. If it lands after the
next fetch cleared the inbox, nats-py takes it for the answer to its no-wait probe and sends a
second, lingering pull for the whole wait. That pull outlives the fetch and captures the next
message, and the fetch after it waits for the rest of its batch until the orphan expires: a
message published after an idle second took up to a second to arrive (nats-io/nats.py#986,
still open in 2.16). Waiting this long lets the late status arrive first, where the next
fetch discards it.
"""


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
    """Fetch from one durable consumer, recreating the subscription when it stalls."""

    def __init__(self, nc: NATS, spec: ConsumerSpec) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self.spec = spec
        self._sub: object | None = None
        self._failures = 0
        self._reconnects_seen = 0

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
        """Create or update the consumer and bind a fresh pull subscription to it."""
        # CONSUMER.CREATE without an action creates, or updates a compatible existing one.
        await self._js.add_consumer(self.spec.stream, self._config())
        self._sub = await self._js.pull_subscribe_bind(
            durable=self.spec.durable, stream=self.spec.stream
        )
        self._reconnects_seen = self._nc.stats["reconnects"]
        self._failures = 0

    async def fetch(self, batch: int, wait: float = FETCH_WAIT) -> Sequence[Delivery]:
        """Up to ``batch`` messages, waiting at most ``wait`` seconds; empty on timeout."""
        if self._sub is None or self._nc.stats["reconnects"] != self._reconnects_seen:
            await self._recreate()
        try:
            msgs = await self._sub.fetch(batch, timeout=wait)  # type: ignore[union-attr]
        except (nats.errors.TimeoutError, TimeoutError):
            await anyio.sleep(STALE_STATUS_GRACE)
            return ()
        except (nats.errors.Error, OSError) as exc:
            self._failures += 1
            if self._failures >= STALL_LIMIT:
                log.warning("pull subscription stalled, recreating", error=str(exc))
                self._sub = None
            await anyio.sleep(min(0.1 * self._failures, 1.0))
            return ()
        self._failures = 0
        return [Delivery(m) for m in msgs]

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
                await self._sub.unsubscribe()  # type: ignore[attr-defined]
            self._sub = None
