"""Timeout: the call is abandoned at the task's deadline, or after the agent's default."""

from __future__ import annotations

import asyncio
import time

import anyio

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
        # anyio deadlines are on the event loop's clock; reading it through the loop skips
        # anyio's backend lookup, which costs more than the rest of this middleware.
        with anyio.CancelScope(deadline=asyncio.get_running_loop().time() + budget):
            return await call_next(ctx)
        # Reached only when the deadline cancelled the call (the scope swallowed it).
        message = f"timed out after {default:g} s" if ctx.deadline is None else "deadline passed"
        return error_reply(ctx.task, ErrorInfo("timeout", message, "BusTimeoutError"))

    return timeout_mw
