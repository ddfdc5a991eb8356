"""One handler, ready to call: its frozen middleware chain and its resilience state."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence

from bus.agent import Agent, HandlerSpec
from bus.messages import Task
from bus.middleware.context import CallContext, Middleware, Mode
from bus.middleware.defaults import ResilienceSet, Resources, chain_for, resilience_for


class HandlerRuntime:
    """One handler: ``chain(context(task, ...))`` calls it; built once when the service starts."""

    __slots__ = ("agent", "chain", "max_attempts", "resilience", "spec", "version")

    def __init__(
        self,
        agent: Agent,
        spec: HandlerSpec,
        *,
        resources: Resources,
        outer: Sequence[Middleware],
    ) -> None:
        self.agent = agent.name
        self.version = agent.version
        self.spec = spec
        self.resilience: ResilienceSet = resilience_for(agent.name, agent.version, spec, resources)
        self.chain = chain_for(spec, outer=outer, resilience=self.resilience)
        retry = spec.options.retry
        self.max_attempts = retry.attempts if retry is not None else 1

    def context(
        self,
        task: Task,
        mode: Mode,
        *,
        attempt: int = 1,
        progress: Callable[[], Awaitable[None]] | None = None,
        admitted: bool = False,
    ) -> CallContext:
        """The context of one call of ``task``, for ``chain``."""
        deadline = None
        if task.deadline:
            deadline = time.monotonic() + (task.deadline - time.time())
        # Positional: on Python 3.11 passing these by keyword cost more than the rest of the call.
        ctx = CallContext(
            task,
            self.spec,
            self.agent,
            self.version,
            mode,
            attempt,
            self.max_attempts,
            deadline,
            progress,
        )
        if admitted:
            ctx.admitted = True
        return ctx
