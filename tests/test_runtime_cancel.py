"""Which in-flight calls a run's cancellation stops, and how a call tells it from others."""

from __future__ import annotations

import asyncio

import pytest

from bus.runtime.cancel import CancelRegistry


async def _call(registry: CancelRegistry, run_id: str, started: asyncio.Event) -> str:
    me = asyncio.current_task()
    assert me is not None
    registry.enter(run_id, me)
    try:
        started.set()
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        if not registry.leave(run_id, me):
            raise
        return "cancelled with its run"
    registry.leave(run_id, me)
    return "finished"


async def test_cancel_stops_only_the_calls_of_that_run() -> None:
    registry = CancelRegistry()
    started = [asyncio.Event() for _ in range(3)]
    calls = [
        asyncio.create_task(_call(registry, run, event))
        for run, event in zip(("r1", "r1", "r2"), started, strict=True)
    ]
    for event in started:
        await event.wait()
    assert registry.cancel("r1") == 2
    assert await calls[0] == await calls[1] == "cancelled with its run"
    assert not calls[2].done()
    assert registry.cancel("r1") == 0  # nothing of r1 runs any more
    calls[2].cancel()  # a cancellation that is not the run's propagates
    with pytest.raises(asyncio.CancelledError):
        await calls[2]


async def test_a_call_that_ended_is_not_cancelled_later() -> None:
    registry = CancelRegistry()
    me = asyncio.current_task()
    assert me is not None
    registry.enter("r1", me)
    assert registry.leave("r1", me) is False
    assert registry.cancel("r1") == 0
    await asyncio.sleep(0)  # no cancellation was delivered to this task
    assert me.cancelling() == 0
