"""Timeout: the call is abandoned at the task's deadline, or after the agent's default."""

from __future__ import annotations

import asyncio
import time

from bus.messages import ErrorInfo, Reply, error_reply
from bus.middleware.context import CallContext, Middleware, Next


def timeout(default: float) -> Middleware:
    """A middleware that cancels the rest of the chain at the deadline.

    The deadline is ``ctx.deadline`` (monotonic seconds) when the task carries one, else
    ``default`` seconds from now. On expiry the handler is cancelled and the call is answered
    with an error of kind ``timeout`` (transient: retry and the breaker treat it as a failure
    of the dependency). A cancellation from outside still propagates.

    Args:
        default: seconds a call may run when the task has no deadline.
    """

    async def timeout_mw(ctx: CallContext, call_next: Next) -> Reply:
        budget = default if ctx.deadline is None else ctx.deadline - time.monotonic()
        # asyncio.timeout costs a fifth of an anyio CancelScope on this hot path, and the bus
        # runs on asyncio only (nats-py); an outer cancellation still propagates untouched.
        scope = asyncio.timeout(budget)
        try:
            async with scope:
                return await call_next(ctx)
        except TimeoutError:
            if not scope.expired():  # raised below, not our deadline: not ours to relabel
                raise
            if ctx.deadline is None:
                message = f"timed out after {default:g} s"
            else:
                message = "deadline passed"
            return error_reply(ctx.task, ErrorInfo("timeout", message, "BusTimeoutError"))

    return timeout_mw
