"""The shared deadline timer behind the timeout middleware."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from bus.agent import Agent
from bus.messages import Reply, Task, ok_reply
from bus.middleware.context import CallContext
from bus.middleware.deadlines import TICK, watchdog
from bus.middleware.timeout import timeout

agent = Agent("calc")


@agent.handler
async def add(x: int) -> int:
    return x


def ctx() -> CallContext:
    return CallContext(
        Task(id="t", agent="calc"), agent.handlers["add"], agent="calc", version="1", mode="direct"
    )


async def test_many_calls_share_one_timer() -> None:
    async def quick(c: CallContext) -> Reply:
        await asyncio.sleep(0)
        return ok_reply(c.task, 1)

    loop = asyncio.get_running_loop()
    scheduled = len(loop._scheduled)  # type: ignore[attr-defined]
    replies = await asyncio.gather(*(timeout(30.0)(ctx(), quick) for _ in range(200)))
    assert all(r.ok for r in replies)
    assert len(loop._scheduled) <= scheduled + 1  # type: ignore[attr-defined]


async def test_an_outer_cancellation_is_not_relabelled() -> None:
    started = asyncio.Event()

    async def hang(c: CallContext) -> Reply:
        started.set()
        await asyncio.sleep(3600)
        raise AssertionError

    call = asyncio.create_task(timeout(30.0)(ctx(), hang))
    await started.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call


async def test_a_handler_that_swallows_the_cancel_leaves_the_task_usable() -> None:
    async def stubborn(c: CallContext) -> Reply:
        with contextlib.suppress(asyncio.CancelledError):  # a badly behaved handler
            await asyncio.sleep(3600)
        return ok_reply(c.task, "late")

    reply = await timeout(0.01)(ctx(), stubborn)
    assert reply.ok
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0
    await asyncio.sleep(0)  # no cancellation is left pending for the caller


async def test_an_expired_call_is_cancelled_within_a_tick() -> None:
    loop = asyncio.get_running_loop()

    async def hang(c: CallContext) -> Reply:
        await asyncio.sleep(3600)
        raise AssertionError

    started = loop.time()
    reply = await timeout(0.05)(ctx(), hang)
    assert reply.error is not None
    assert reply.error.kind == "timeout"
    assert loop.time() - started < 0.05 + 2 * TICK + 0.5
    assert not watchdog()._calls  # forgotten once settled
