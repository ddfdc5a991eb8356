"""Timeout: the call is abandoned at the task's deadline, or after the agent's default."""

from __future__ import annotations

import asyncio
import time

from bus.messages import ErrorInfo, Reply, error_reply
from bus.middleware.context import CallContext, Middleware, Next
from bus.middleware.deadlines import running_watchdog


def timeout(default: float) -> Middleware:
    """A middleware that cancels the rest of the chain at the deadline.

    The deadline is ``ctx.deadline`` (monotonic seconds) when the task carries one, else
    ``default`` seconds from now. On expiry the handler is cancelled and the call is answered
    with an error of kind ``timeout`` (transient: retry and the breaker treat it as a failure
    of the dependency). Deadlines are enforced by a shared coarse timer (``deadlines``), so a
    call is cancelled at most one tick (50 ms) late. A cancellation from outside propagates.

    Args:
        default: seconds a call may run when the task has no deadline.
    """

    async def timeout_mw(ctx: CallContext, call_next: Next) -> Reply:
        budget = default if ctx.deadline is None else ctx.deadline - time.monotonic()
        task, dog = running_watchdog()
        token = dog.watch(task, budget)
        try:
            reply = await call_next(ctx)
        except asyncio.CancelledError:
            if not dog.forget(token):  # cancelled from outside: not ours to relabel
                raise
            task.uncancel()
            message = (
                "deadline passed" if ctx.deadline is not None else f"timed out after {default:g} s"
            )
            return error_reply(ctx.task, ErrorInfo("timeout", message, "BusTimeoutError"))
        except BaseException:
            dog.forget(token)
            raise
        if dog.forget(token):  # the handler swallowed our cancellation: settle the count
            task.uncancel()
        return reply

    return timeout_mw
