"""Dedup cache without NATS: keys, the local LRU with TTL, single flight in one process."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from bus.agent import Agent
from bus.messages import ErrorInfo, Reply, Task, error_reply, ok_reply
from bus.middleware.cache import DedupCache, cache_key
from bus.middleware.clock import ManualClock
from bus.middleware.context import CallContext
from bus.policies import CachePolicy

agent = Agent("summarise")


@agent.handler
async def summarise(x: Any) -> Any:
    return x


SPEC = agent.handlers["summarise"]


def make_ctx(input: Any, task_id: str = "t1") -> CallContext:
    task = Task(id=task_id, agent="summarise", run_id=f"run-{task_id}", step="2", input=input)
    return CallContext(task, SPEC, agent="summarise", version="1", mode="direct")


class Counting:
    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail
        self.release = anyio.Event()
        self.started = anyio.Event()

    async def __call__(self, ctx: CallContext) -> Reply:
        self.calls += 1
        self.started.set()
        await self.release.wait()
        if self.fail:
            return error_reply(ctx.task, ErrorInfo("transient", "down"))
        return ok_reply(ctx.task, {"echo": ctx.task.input})


def test_cache_key_is_canonical_and_scoped() -> None:
    key = cache_key("a", "1", "h", {"x": 1, "y": [1, 2]})
    assert key == cache_key("a", "1", "h", {"y": [1, 2], "x": 1})
    assert len(key) == 40
    assert all(c in "0123456789abcdef" for c in key)
    others = {
        cache_key("b", "1", "h", {"x": 1, "y": [1, 2]}),
        cache_key("a", "2", "h", {"x": 1, "y": [1, 2]}),
        cache_key("a", "1", "g", {"x": 1, "y": [1, 2]}),
        cache_key("a", "1", "h", {"x": 1, "y": [2, 1]}),
    }
    assert key not in others
    assert len(others) == 4


async def test_hit_returns_cached_output_with_the_current_ids() -> None:
    cache = DedupCache(CachePolicy(), agent="summarise", version="1", store=None)
    handler = Counting()
    handler.release.set()
    first_ctx, second_ctx = make_ctx({"doc": 1}, "t1"), make_ctx({"doc": 1}, "t2")
    first = await cache(first_ctx, handler)
    second = await cache(second_ctx, handler)
    assert handler.calls == 1
    assert (first_ctx.extra["cache"], second_ctx.extra["cache"]) == ("miss", "hit")
    assert not first.cached
    assert second.cached
    assert second.output == first.output
    assert (second.task_id, second.run_id, second.step) == ("t2", "run-t2", "2")
    assert cache.snapshot() == {"hits": 1, "misses": 1, "waits": 0}


async def test_entries_expire_after_ttl_and_lru_evicts_the_oldest() -> None:
    clock = ManualClock()
    policy = CachePolicy(ttl=10.0, local_size=2)
    cache = DedupCache(policy, agent="summarise", version="1", store=None, clock=clock)
    handler = Counting()
    handler.release.set()
    await cache(make_ctx(1), handler)
    clock.advance(9.9)
    assert (await cache(make_ctx(1), handler)).cached
    clock.advance(0.1)
    assert not (await cache(make_ctx(1), handler)).cached  # expired
    await cache(make_ctx(2), handler)
    await cache(make_ctx(1), handler)  # 1 is now the most recent
    await cache(make_ctx(3), handler)  # evicts 2
    calls = handler.calls
    assert (await cache(make_ctx(1), handler)).cached
    assert not (await cache(make_ctx(2), handler)).cached
    assert handler.calls == calls + 1


async def test_errors_are_not_cached() -> None:
    cache = DedupCache(CachePolicy(), agent="summarise", version="1", store=None)
    handler = Counting(fail=True)
    handler.release.set()
    await cache(make_ctx(1), handler)
    await cache(make_ctx(1), handler)
    assert handler.calls == 2


async def test_concurrent_identical_calls_share_one_execution() -> None:
    cache = DedupCache(CachePolicy(), agent="summarise", version="1", store=None)
    handler = Counting()
    replies: list[Reply] = []

    async def call(i: int) -> None:
        replies.append(await cache(make_ctx({"same": True}, f"t{i}"), handler))

    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(call, i)
        await handler.started.wait()
        await wait_until(lambda: cache.snapshot()["waits"] == 9)
        handler.release.set()
    assert handler.calls == 1
    assert sorted(r.cached for r in replies) == [False] + [True] * 9
    assert {r.task_id for r in replies} == {f"t{i}" for i in range(10)}


async def test_waiters_compute_themselves_when_the_shared_execution_fails() -> None:
    cache = DedupCache(CachePolicy(), agent="summarise", version="1", store=None)
    handler = Counting(fail=True)
    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(cache, make_ctx(1, f"t{i}"), handler)
        await handler.started.wait()
        await wait_until(lambda: cache.snapshot()["waits"] == 2)
        handler.release.set()
    assert handler.calls == 3


async def wait_until(condition: Any, timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.005)


@pytest.mark.parametrize("output", [None, 0, "", []])
async def test_falsy_outputs_are_cached_too(output: Any) -> None:
    cache = DedupCache(CachePolicy(), agent="summarise", version="1", store=None)
    calls = 0

    async def handler(ctx: CallContext) -> Reply:
        nonlocal calls
        calls += 1
        return ok_reply(ctx.task, output)

    await cache(make_ctx(1), handler)
    reply = await cache(make_ctx(1), handler)
    assert reply.cached
    assert reply.output == output
    assert calls == 1
