"""Event handlers: ``@agent.on_event("code.*")`` consumes ``bus.event.<type>`` from ``BUS_EVENTS``.

Each handler has one durable consumer (``<agent>-<handler>``) shared by the agent's replicas,
so an event is handled once per agent (pub/sub across agents, work sharing within one).
Events follow the CloudEvents NATS binding: binary mode (body = data, ``ce-*`` headers) or
structured mode (``Content-Type: application/cloudevents+json``).
"""

from __future__ import annotations

import hashlib
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup

from bus import codec
from bus.deadletter import Reason
from bus.errors import InvalidInputError
from bus.messages import Event, Task
from bus.runtime.deadletters import DeadLetters
from bus.runtime.handlers import HandlerRuntime
from bus.transport.consumer import Delivery, PullConsumer

log = structlog.get_logger("bus.runtime")

# Why an event handler gave up, by the kind of its last error (retryable kinds: max_deliver).
_REASONS: dict[str, Reason] = {"invalid_input": "invalid_input", "permanent": "permanent"}


def decode_event(subject: str, data: bytes, headers: dict[str, str], prefix: str) -> Event:
    """The event a message carries, in either CloudEvents mode.

    Raises:
        InvalidInputError: the body cannot be decoded.
    """
    ctype = codec.content_type(headers)
    if ctype == codec.CLOUDEVENTS_JSON:
        return codec.decode(data, Event, codec.JSON)
    event_type = headers.get("ce-type") or subject.removeprefix(f"{prefix}.event.")
    payload: Any = codec.decode(data, Any, ctype) if data else None
    return Event(
        type=event_type,
        data=payload,
        id=headers.get("ce-id") or headers.get("Nats-Msg-Id") or _content_id(subject, data),
        source=headers.get("ce-source", "bus"),
        time=headers.get("ce-time", ""),
        traceparent=headers.get("traceparent", ""),
    )


class EventWorker:
    """Runs one event handler for every matching event, once per agent."""

    def __init__(
        self,
        handler: HandlerRuntime,
        *,
        consumer: PullConsumer,
        dead_letters: DeadLetters,
        prefix: str,
        concurrency: int,
        fetch_wait: float,
    ) -> None:
        self._handler = handler
        self.consumer = consumer
        self._dead_letters = dead_letters
        self._prefix = prefix
        self._slots = anyio.Semaphore(concurrency)
        self._fetch_wait = fetch_wait

    async def run(self, tg: TaskGroup, stop: anyio.Event) -> None:
        while not stop.is_set():
            await self._slots.acquire()
            try:
                deliveries = await self.consumer.fetch(1, self._fetch_wait)
            except BaseException:
                self._slots.release()
                raise
            if not deliveries:
                self._slots.release()
            for delivery in deliveries:
                tg.start_soon(self._process_and_release, delivery)

    async def _process_and_release(self, delivery: Delivery) -> None:
        try:
            await self.process(delivery)
        except Exception:
            log.exception("event processing failed outside the handler chain")
        finally:
            self._slots.release()

    async def process(self, delivery: Delivery) -> None:
        try:
            event = decode_event(delivery.subject, delivery.data, delivery.headers, self._prefix)
        except InvalidInputError as exc:
            await self._dead_letter(delivery, "invalid_input", str(exc), "")
            await delivery.term()
            return
        wants_event = self._handler.spec.input_type is Event
        task = Task(
            id=event.id,
            agent=self._handler.agent,
            input=codec.to_builtins(event) if wants_event else event.data,
            trace=event.traceparent,
            handler=self._handler.spec.name,
        )
        ctx = self._handler.context(task, mode="durable", attempt=delivery.delivered)
        reply = await self._handler.chain(ctx)
        if ctx.retry_delay is not None:
            await delivery.nak(ctx.retry_delay)
            return
        if reply.error is not None:
            reason = _REASONS.get(reply.error.kind, "max_deliver")
            await self._dead_letter(delivery, reason, reply.error.message, event.id)
        await delivery.ack()

    async def _dead_letter(
        self, delivery: Delivery, reason: Reason, error: str, task_id: str
    ) -> None:
        await self._dead_letters.send(
            delivery.data,
            reason=reason,
            error=error,
            task_id=task_id,
            subject=delivery.subject,
            attempts=delivery.delivered,
            content_type=delivery.headers.get("Content-Type"),
        )


def _content_id(subject: str, data: bytes) -> str:
    return hashlib.blake2b(subject.encode() + b"\0" + data, digest_size=16).hexdigest()
