"""The innermost call of every chain: typed input in, plain data out, failures as replies."""

from __future__ import annotations

import inspect
import time
from typing import Any

import anyio.to_thread

from bus import codec
from bus.agent import HandlerSpec
from bus.errors import InvalidInputError
from bus.messages import Reply, error_info, error_reply, ok_reply
from bus.middleware.context import CallContext, Next


def handler_adapter(spec: HandlerSpec) -> Next:
    """Call ``spec.func`` for a context and turn its result or exception into a ``Reply``.

    The task's plain input is converted to ``spec.input_type`` first (a mismatch is answered
    ``invalid_input`` naming the field) and stored in ``ctx.input``. The handler receives the
    context when it declared one, else the converted input. Synchronous functions run in a
    worker thread (abandoned, not killed, when the call is cancelled). The output is converted
    to plain data. Any ``Exception`` becomes an error reply of its kind (``error_info``);
    cancellation propagates.
    """
    takes_nothing = not spec.takes_context and not _parameters(spec)

    async def in_thread(*args: Any) -> Any:
        result = await anyio.to_thread.run_sync(spec.func, *args, abandon_on_cancel=True)
        if inspect.isawaitable(result):
            return await result
        return result

    run = spec.func if spec.is_async else in_thread

    input_type, takes_context = spec.input_type, spec.takes_context

    async def call(ctx: CallContext) -> Reply:
        started = time.perf_counter()
        try:
            ctx.input = codec.convert(ctx.task.input, input_type)
        except InvalidInputError as exc:
            return error_reply(ctx.task, error_info(exc), duration_ms=_ms(started))
        try:
            if takes_nothing:
                result = await run()
            else:
                result = await run(ctx if takes_context else ctx.input)
            output = codec.to_builtins(result)
        except Exception as exc:
            return error_reply(ctx.task, error_info(exc), duration_ms=_ms(started))
        return ok_reply(ctx.task, output, duration_ms=(time.perf_counter() - started) * 1000.0)

    return call


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def _parameters(spec: HandlerSpec) -> int:
    try:
        return len(inspect.signature(spec.func).parameters)
    except (TypeError, ValueError):  # no introspectable signature: pass the input
        return 1
