"""Publish dead letters to ``bus.dlq.<agent>`` (stream ``BUS_DLQ``)."""

from __future__ import annotations

import structlog

from bus.deadletter import Reason, dead_letter_headers
from bus.errors import TransientError
from bus.messages import new_id
from bus.subjects import Subjects
from bus.transport.wire import Wire

log = structlog.get_logger("bus.runtime")


class DeadLetters:
    """Sends payloads an agent gave up on to the DLQ, reason in headers."""

    __slots__ = ("_agent", "_on_dead_letter", "_subjects", "_wire")

    def __init__(
        self, wire: Wire, subjects: Subjects, agent: str, on_dead_letter: object = None
    ) -> None:
        self._wire = wire
        self._subjects = subjects
        self._agent = agent
        self._on_dead_letter = on_dead_letter

    async def send(
        self,
        payload: bytes,
        *,
        reason: Reason,
        error: str,
        task_id: str = "",
        subject: str = "",
        attempts: int = 1,
        content_type: str | None = None,
    ) -> None:
        headers = dead_letter_headers(
            agent=self._agent,
            reason=reason,
            error=error,
            task_id=task_id,
            subject=subject,
            attempts=attempts,
            content_type=content_type,
        )
        # A task's dead letter is deduplicated by task id (a redelivery must not add a second);
        # an undecodable payload has no id, so each one is kept.
        msg_id = f"dlq.{self._agent}.{task_id}.{reason}" if task_id else new_id()
        try:
            await self._wire.persist(
                self._subjects.dlq(self._agent), payload, msg_id=msg_id, headers=headers
            )
        except TransientError as exc:
            log.error("dead letter not stored", reason=reason, error=str(exc))
            return
        log.warning("dead-lettered", reason=reason, task_id=task_id, error=error)
        if callable(self._on_dead_letter):
            self._on_dead_letter(self._agent, reason)
