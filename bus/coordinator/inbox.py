"""What the coordinator receives: agents' replies, events, start and cancel requests.

Each handler decodes, hands the change to the engine, and settles the message only once the
record is written and its tasks are published: a reply is acked after that, and a failure
to reach NATS leaves it to be delivered again. Rejected replies are acked (they can never
become valid), logged with the reason and counted.
"""

from __future__ import annotations

from typing import Any

import structlog

from bus import codec
from bus.coordinator.control import CancelRequest, ControlAnswer, StartRequest
from bus.coordinator.engine import Engine, UnknownRunError
from bus.coordinator.events import read_event, run_id_for_event
from bus.coordinator.observer import CoordinatorObserver
from bus.coordinator.registry import UnknownTopologyError
from bus.errors import ConfigError, InvalidInputError, TransientError
from bus.messages import Reply, new_id
from bus.subjects import Subjects
from bus.transport.consumer import Delivery
from bus.transport.wire import Inbound
from bus.workflow.states import RejectedTransitionError

log = structlog.get_logger("bus.coordinator")

NAK_DELAY = 0.5
UNKNOWN_RUN_TRIES = 3


class Inbox:
    """Message handlers of one coordinator."""

    __slots__ = ("_engine", "_observer", "_subjects")

    def __init__(self, engine: Engine, subjects: Subjects, observer: CoordinatorObserver) -> None:
        self._engine = engine
        self._subjects = subjects
        self._observer = observer

    # -- replies ---------------------------------------------------------------------------
    async def on_reply(self, delivery: Delivery) -> None:
        """A reply on ``bus.reply.<agent>.<run_id>.<task>``: the subject names the trusted
        sender (run ids may hold dots; the agent and the task token may not)."""
        tail = delivery.subject.removeprefix(f"{self._subjects.prefix}.reply.")
        agent, _, rest = tail.partition(".")
        run_id = rest.rpartition(".")[0]
        try:
            reply = codec.decode(delivery.data, Reply, codec.content_type(delivery.headers))
        except InvalidInputError as exc:
            self._reject("malformed", run_id, agent, str(exc))
            await delivery.term()
            return
        if reply.run_id and reply.run_id != run_id:
            self._reject("forged", run_id, agent, f"payload names run {reply.run_id}")
            await delivery.ack()
            return
        try:
            await self._engine.reply(run_id, reply, sender=agent)
        except UnknownRunError as exc:
            if delivery.delivered < UNKNOWN_RUN_TRIES:
                # A replica's direct get may lag the write that created the run: look again.
                await delivery.nak(NAK_DELAY)
                return
            self._reject(exc.reason, run_id, agent, str(exc), task_id=reply.task_id)
        except RejectedTransitionError as exc:
            self._reject(exc.reason, run_id, agent, str(exc), task_id=reply.task_id)
        except UnknownTopologyError as exc:
            self._reject("unknown_topology", run_id, agent, str(exc), task_id=reply.task_id)
        except TransientError as exc:
            log.warning("reply not applied yet, will retry", run_id=run_id, error=str(exc))
            await delivery.nak(NAK_DELAY)
            return
        await delivery.ack()

    def _reject(self, reason: str, run_id: str, agent: str, why: str, task_id: str = "") -> None:
        self._observer.transition_rejected(reason)
        log.info(
            "reply rejected", reason=reason, run_id=run_id, agent=agent, task_id=task_id, why=why
        )

    # -- events ----------------------------------------------------------------------------
    async def on_event(self, delivery: Delivery) -> None:
        """An event on ``bus.event.<type>``: start one run per topology it triggers."""
        try:
            event = read_event(
                delivery.subject,
                delivery.data,
                delivery.headers,
                prefix=self._subjects.prefix,
                stream_seq=delivery.stream_seq,
            )
        except InvalidInputError as exc:
            log.warning("unreadable event dropped", subject=delivery.subject, error=str(exc))
            await delivery.term()
            return
        registry = self._engine.registry
        try:
            for topology in registry.triggered_by(event.type):
                run_id = run_id_for_event(event.id, topology.name)
                await self._engine.start(
                    topology, run_id=run_id, input=event.data, trace=event.traceparent
                )
        except TransientError as exc:
            log.warning("event not handled yet, will retry", event_id=event.id, error=str(exc))
            await delivery.nak(NAK_DELAY)
            return
        await delivery.ack()

    # -- control requests ------------------------------------------------------------------
    async def on_start(self, msg: Inbound) -> None:
        ctype = codec.content_type(msg.headers)
        try:
            request = codec.decode(msg.data, StartRequest, ctype)
            topology = await self._engine.registry.get(request.topology, request.version)
            record, created = await self._engine.start(
                topology,
                run_id=request.run_id or new_id(),
                input=request.input,
                trace=request.trace,
            )
            answer = ControlAnswer(run_id=record.run_id, state=record.state, created=created)
        except Exception as exc:
            answer = _failure(exc)
        await _answer(msg, answer, ctype)

    async def on_cancel(self, msg: Inbound) -> None:
        ctype = codec.content_type(msg.headers)
        try:
            request = codec.decode(msg.data, CancelRequest, ctype)
            record = await self._engine.cancel(request.run_id)
            answer = ControlAnswer(run_id=record.run_id, state=record.state)
        except Exception as exc:
            answer = _failure(exc)
        await _answer(msg, answer, ctype)


def _failure(exc: Exception) -> ControlAnswer:
    kind = "unavailable"
    if isinstance(exc, UnknownRunError | UnknownTopologyError):
        kind = "not_found"
    elif isinstance(exc, RejectedTransitionError):
        kind = "conflict"
    elif isinstance(exc, InvalidInputError | ConfigError):
        kind = "invalid"
    elif not isinstance(exc, TransientError):
        log.exception("control request failed")
    return ControlAnswer(error=str(exc) or type(exc).__name__, kind=kind)


async def _answer(msg: Inbound, answer: Any, ctype: str) -> None:
    # In the caller's encoding. MessagePack goes without a header, as on every bus message:
    # each header costs nats-py a regex match and an encode per publish.
    json = codec.is_json(ctype)
    headers = {"Content-Type": codec.JSON} if json else None
    try:
        await msg.respond(codec.encode(answer, codec.JSON if json else codec.MSGPACK), headers)
    except TransientError as exc:
        log.warning("control answer lost", error=str(exc))
