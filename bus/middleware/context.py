"""The one object a middleware and a handler receive per call."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

from bus.messages import Reply, Task

if TYPE_CHECKING:
    from bus.agent import HandlerSpec

Mode = Literal["direct", "durable", "event"]


class CallContext:
    """The decoded task plus everything the chain needs to know or control about this call.

    Attributes:
        task: the task as received (its ``input`` is the raw plain data).
        input: the input converted to the handler's declared type (set before the handler runs).
        agent: the agent's name; ``version`` its version.
        handler: the handler being called.
        mode: ``direct`` (core request/reply), ``durable`` (JetStream task) or ``event``.
        attempt: 1-based attempt; in durable mode the JetStream delivery count.
        max_attempts: the last attempt this delivery may make (durable mode).
        deadline: monotonic time after which the call is abandoned (``None``: no deadline).
        retry_delay: set by the retry middleware in durable mode: NAK with this delay instead of
            acking.
        admitted: the rate limiter already admitted this call (durable fetches take tokens
            before fetching).
        progress: tell JetStream the task is still being worked on (no-op outside durable).
        extra: free room for custom middleware.
    """

    __slots__ = (
        "admitted",
        "agent",
        "attempt",
        "deadline",
        "extra",
        "handler",
        "input",
        "max_attempts",
        "mode",
        "progress",
        "retry_delay",
        "task",
        "version",
    )

    def __init__(  # positional-or-keyword: the runtime passes all of them positionally
        self,
        task: Task,
        handler: HandlerSpec,
        agent: str,
        version: str,
        mode: Mode,
        attempt: int = 1,
        max_attempts: int = 1,
        deadline: float | None = None,
        progress: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.task = task
        self.handler = handler
        self.agent = agent
        self.version = version
        self.mode: Mode = mode
        self.attempt = attempt
        self.max_attempts = max_attempts
        self.deadline = deadline
        self.input: Any = task.input
        self.retry_delay: float | None = None
        self.admitted = False
        self.progress = progress or _no_progress
        self.extra: dict[str, Any] = {}

    def remaining(self, now: float | None = None) -> float | None:
        """Seconds left until the deadline (``None`` when there is none)."""
        if self.deadline is None:
            return None
        return self.deadline - (time.monotonic() if now is None else now)


async def _no_progress() -> None:
    return None


Next = Callable[[CallContext], Awaitable[Reply]]
Middleware = Callable[[CallContext, Next], Awaitable[Reply]]
