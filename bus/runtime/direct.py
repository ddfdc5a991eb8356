"""Direct request/reply on ``bus.agent.<name>`` (core NATS, queue group ``<name>``).

The request body is the handler's input (MessagePack, or JSON with ``Content-Type:
application/json``); the answer is a ``Reply`` in the same encoding. Optional headers:
``Bus-Handler`` (which handler), ``Bus-Timeout`` (seconds), ``traceparent``, ``Nats-Msg-Id``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from anyio.abc import TaskGroup

from bus import codec
from bus.errors import InvalidInputError, TransientError
from bus.messages import ErrorInfo, Task, error_reply, new_id
from bus.runtime.deadletters import DeadLetters
from bus.runtime.handlers import HandlerRuntime
from bus.transport.wire import Message, answer
from bus.workpool import WorkPool

log = structlog.get_logger("bus.runtime")

HANDLER_HEADER = "Bus-Handler"
TIMEOUT_HEADER = "Bus-Timeout"
_NO_HEADERS: dict[str, str] = {}
_JSON_HEADERS = {"Content-Type": codec.JSON}  # read only, by nats-py


class DirectServer:
    """Answers direct requests with ``concurrency`` workers fed by the subscription.

    A worker pool rather than a task per request: spawning a task costs more than a whole
    fast handler. When every worker is busy and the queue is full the subscription waits,
    which is the back-pressure (NATS then buffers, and drops only for a slow consumer).
    """

    def __init__(
        self,
        agent: str,
        handlers: dict[str, HandlerRuntime],
        *,
        subject: str,
        dead_letters: DeadLetters,
        concurrency: int,
        max_input_bytes: int,
    ) -> None:
        self._agent = agent
        self._subject = subject
        self._handlers = handlers
        self._default = next(iter(handlers.values()))
        self._dead_letters = dead_letters
        self._pool = WorkPool(self._serve, workers=concurrency, capacity=max(64, 4 * concurrency))
        self._max_input = max_input_bytes
        self.on_request: Callable[[Message], Awaitable[None]] = self._pool.put
        """Queue a request (the subscription's handler)."""

    def start(self, task_group: TaskGroup) -> None:
        """Start the workers in ``task_group``."""
        self._pool.start(task_group)

    async def close(self) -> None:
        """Let the workers finish what is queued, then stop."""
        self._pool.close()

    async def _serve(self, msg: Message) -> None:
        headers = msg.headers
        if headers:
            ctype = codec.content_type(headers)
            task_id = headers.get("Nats-Msg-Id") or new_id()
        else:  # the common case: MessagePack, no options
            headers, ctype, task_id = _NO_HEADERS, codec.MSGPACK, new_id()
        try:
            handler = self._handler_for(msg.subject, headers)
            try:
                task = Task(
                    id=task_id,
                    agent=self._agent,
                    input=self._decode(msg, ctype),
                    trace=headers.get("traceparent", "") if headers else "",
                    deadline=_deadline(headers.get(TIMEOUT_HEADER)) if headers else 0.0,
                    handler=handler.spec.name,
                )
            except InvalidInputError as exc:
                await self._dead_letter(msg, task_id, str(exc))
                bad = Task(id=task_id, agent=self._agent)
                reply = error_reply(bad, ErrorInfo(kind="invalid_input", message=str(exc)))
            else:
                reply = await handler.chain(handler.context(task, "direct"))
                if reply.error is not None and reply.error.kind == "invalid_input":
                    await self._dead_letter(msg, task_id, reply.error.message)
            json = ctype is not codec.MSGPACK and codec.is_json(ctype)
            await answer(msg, codec.encode(reply, ctype), _JSON_HEADERS if json else None)
        except TransientError as exc:
            log.warning("direct reply not sent", agent=self._agent, error=str(exc))
        except Exception:
            log.exception("direct request failed outside the handler chain")

    def _handler_for(self, subject: str, headers: dict[str, str]) -> HandlerRuntime:
        # The default handler answers on bus.agent.<name>, the others on bus.agent.<name>.<h>.
        name = headers.get(HANDLER_HEADER) if headers else None
        if name is None and subject == self._subject:
            return self._default
        name = name or subject[len(self._subject) + 1 :]
        return self._handlers.get(name) or self._default

    def _decode(self, msg: Message, ctype: str) -> Any:
        if len(msg.data) > self._max_input:
            raise InvalidInputError(
                f"payload of {len(msg.data)} bytes exceeds the limit of {self._max_input} bytes"
            )
        if not msg.data:
            return None
        return codec.decode(msg.data, Any, ctype)

    async def _dead_letter(self, msg: Message, task_id: str, error: str) -> None:
        headers = msg.headers or {}
        await self._dead_letters.send(
            msg.data,
            reason="invalid_input",
            error=error,
            task_id=task_id if "Nats-Msg-Id" in headers else "",
            subject=msg.subject,
            content_type=headers.get("Content-Type"),
        )


def _deadline(raw: str | None) -> float:
    if not raw:
        return 0.0
    try:
        seconds = float(raw)
    except ValueError:
        raise InvalidInputError(f"{TIMEOUT_HEADER} must be seconds, got {raw!r}") from None
    return time.time() + seconds
