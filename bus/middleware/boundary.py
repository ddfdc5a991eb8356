"""The error boundary: nothing that escapes the chain below crashes a consumer."""

from __future__ import annotations

import structlog

from bus.messages import Reply, error_info, error_reply
from bus.middleware.context import CallContext, Next

log = structlog.get_logger("bus.middleware")


async def error_boundary(ctx: CallContext, call_next: Next) -> Reply:
    """Turn any ``Exception`` raised below into an error ``Reply`` and log it with its traceback.

    The kind comes from ``error_info``: errors of the bus keep theirs, a builtin
    ``TimeoutError`` is ``timeout``, a ``ConnectionError`` ``transient``, anything else (a bug
    below the boundary) ``permanent``, because the same input would hit it again. Cancellation
    is never caught.
    """
    try:
        return await call_next(ctx)
    except Exception as exc:
        log.exception("chain_failed", agent=ctx.agent, handler=ctx.handler.name)
        return error_reply(ctx.task, error_info(exc))
