"""Build the frozen chain of middleware around a handler.

The order, outer to inner, and why:

1. ``context`` + metrics + logging: binds ``run_id``/``agent``/... for every log line and
   measures the whole call, cached or not.
2. the error boundary: whatever escapes below becomes an error ``Reply``; nothing crashes the
   consumer.
3. dedup cache: a cached reply skips everything below, including the rate limit.
4. rate limit: one token per real execution, however many retries it takes.
5. retry: each attempt goes through the breaker, so an open breaker fails attempts fast.
6. breaker: records every attempt's outcome; the timeout below makes slow calls count.
7. timeout: cancels the handler at the deadline.
8. the handler.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence

from bus.messages import Reply
from bus.middleware.context import CallContext, Middleware, Next


def build_chain(middleware: Sequence[Middleware], handler: Next) -> Next:
    """Wrap ``handler`` in ``middleware`` (outermost first); built once, then reused."""
    call: Next = handler
    for mw in reversed(middleware):
        call = _bind(mw, call)
    return call


def _bind(mw: Middleware, call_next: Next) -> Next:
    # A plain function handing back the middleware's coroutine: a layer costs one coroutine,
    # not two (an ``async def`` wrapper awaiting it would add a frame per layer per call).
    def call(ctx: CallContext) -> Awaitable[Reply]:
        return mw(ctx, call_next)

    return call
