"""Shared breaker, shared rate limit and dedup cache across replicas, on a real nats-server.

Each "replica" is a middleware instance with its own NATS connection, as separate processes
would have; they meet only through the KV buckets.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import pytest
from nats.aio.client import Client as NATS

from bus.agent import Agent
from bus.messages import ErrorInfo, Reply, Task, error_reply, ok_reply
from bus.middleware.breaker import CircuitBreaker
from bus.middleware.cache import DedupCache, IdempotencyStore, cache_key
from bus.middleware.context import CallContext
from bus.middleware.ratelimit import RateLimiter
from bus.policies import BreakerPolicy, CachePolicy, RateLimit
from bus.settings import Settings
from bus.subjects import Subjects
from bus.transport.connection import connect
from bus.transport.jetstream import ensure_bucket
from bus.transport.kv import Bucket

agent = Agent("svc")


@agent.handler
async def handle(x: Any) -> Any:
    return x


SPEC = agent.handlers["handle"]


def make_ctx(input: Any = None, task_id: str = "t1") -> CallContext:
    task = Task(id=task_id, agent="svc", input=input)
    return CallContext(task, SPEC, agent="svc", version="1", mode="direct")


@asynccontextmanager
async def replicas(settings: Settings, n: int) -> AsyncIterator[list[NATS]]:
    async with AsyncExitStack() as stack:
        clients = []
        for _ in range(n):
            client = await connect(settings)
            stack.push_async_callback(client.close)
            clients.append(client)
        yield clients


async def bucket(nc: NATS, name: str) -> Bucket:
    return await ensure_bucket(nc, Subjects("bus"), name)


async def wait_until(condition: Callable[[], Any], timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.01)


class Dependency:
    def __init__(self, healthy: bool) -> None:
        self.healthy = healthy
        self.calls = 0
        self.block: anyio.Event | None = None

    async def __call__(self, ctx: CallContext) -> Reply:
        self.calls += 1
        if self.block is not None:
            await self.block.wait()
        if self.healthy:
            return ok_reply(ctx.task, "ok")
        return error_reply(ctx.task, ErrorInfo("transient", "dependency down"))


# -- breaker ---------------------------------------------------------------------------------


async def test_shared_breaker_opened_by_one_replica_stops_the_others(settings: Settings) -> None:
    policy = BreakerPolicy(window=4, min_calls=4, failure_rate=0.5, open_for=30.0, shared=True)
    async with replicas(settings, 2) as (nc_a, nc_b):
        a = CircuitBreaker(policy, key="svc.dep", store=await bucket(nc_a, "breakers"))
        b = CircuitBreaker(policy, key="svc.dep", store=await bucket(nc_b, "breakers"))
        healthy_for_b = Dependency(healthy=True)
        assert (await b(make_ctx(), healthy_for_b)).ok
        assert b.state == "closed"

        failing = Dependency(healthy=False)
        for _ in range(4):
            await a(make_ctx(), failing)
        assert a.state == "open"

        replies: list[Reply] = []

        async def call_b() -> bool:
            replies.append(await b(make_ctx(), healthy_for_b))
            return replies[-1].ok

        with anyio.fail_after(3.0):
            while await call_b():
                await anyio.sleep(0.02)
        refused = replies[-1]
        assert refused.error is not None
        assert refused.error.kind == "breaker_open"
        assert healthy_for_b.calls == len(replies)  # the refused call never reached it
        assert b.state == "open"
        assert 0 < refused.error.retry_after <= 30.0  # type: ignore[operator]
        entry = await (await bucket(nc_a, "breakers")).get("svc.dep")
        assert entry is not None
        assert b'"state":"open"' in entry.value


async def test_shared_breaker_probes_are_counted_across_replicas_and_close_it_for_all(
    settings: Settings,
) -> None:
    policy = BreakerPolicy(
        window=2, min_calls=2, failure_rate=0.5, open_for=0.5, half_open_calls=1, shared=True
    )
    async with replicas(settings, 2) as (nc_a, nc_b):
        a = CircuitBreaker(policy, key="probe", store=await bucket(nc_a, "breakers"))
        b = CircuitBreaker(policy, key="probe", store=await bucket(nc_b, "breakers"))
        failing = Dependency(healthy=False)
        await a(make_ctx(), failing)
        await a(make_ctx(), failing)
        assert a.state == "open"
        await wait_until(lambda: a.state == "half_open", timeout=3.0)

        probe = Dependency(healthy=True)
        probe.block = anyio.Event()
        other = Dependency(healthy=True)
        async with anyio.create_task_group() as tg:
            tg.start_soon(a, make_ctx(), probe)
            await wait_until(lambda: probe.calls == 1)
            # A holds the only half-open permit in KV: B must not probe as well.
            reply = await b(make_ctx(), other)
            assert reply.error is not None
            assert reply.error.kind == "breaker_open"
            assert other.calls == 0
            probe.block.set()
        assert a.state == "closed"
        assert (await b(make_ctx(), other)).ok
        assert b.state == "closed"
        assert other.calls == 1


async def test_wait_permitted_pauses_until_the_shared_breaker_half_opens(
    settings: Settings,
) -> None:
    policy = BreakerPolicy(window=2, min_calls=2, open_for=0.6, shared=True)
    async with replicas(settings, 2) as (nc_a, nc_b):
        a = CircuitBreaker(policy, key="pause", store=await bucket(nc_a, "breakers"))
        b = CircuitBreaker(policy, key="pause", store=await bucket(nc_b, "breakers"), refresh=0.0)
        await b.wait_permitted()
        failing = Dependency(healthy=False)
        await a(make_ctx(), failing)
        await a(make_ctx(), failing)
        opened = time.monotonic()
        await b.wait_permitted()
        assert time.monotonic() - opened >= 0.5
        assert b.state == "half_open"


# -- rate limit ------------------------------------------------------------------------------


def max_in_window(times: list[float], width: float = 1.0) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= width:
            start += 1
        best = max(best, end - start + 1)
    return best


@pytest.mark.slow
async def test_shared_limit_holds_across_replicas_and_survives_one_stopping(
    settings: Settings,
) -> None:
    policy = RateLimit(rate=20, per=1.0, burst=5, shared=True, lease=2)
    async with replicas(settings, 3) as clients:
        limiters = [
            RateLimiter(policy, key="svc.limit", store=await bucket(nc, "limits")) for nc in clients
        ]
        grants: list[float] = []
        scopes = [anyio.CancelScope() for _ in limiters]

        async def replica(limiter: RateLimiter, scope: anyio.CancelScope) -> None:
            async def worker() -> None:
                while True:
                    await limiter.acquire()
                    grants.append(time.monotonic())

            with scope:
                async with anyio.create_task_group() as tg:
                    for _ in range(4):
                        tg.start_soon(worker)

        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            for limiter, scope in zip(limiters, scopes, strict=True):
                tg.start_soon(replica, limiter, scope)
            await anyio.sleep(3.0)  # measuring period, not synchronisation
            scopes[2].cancel()
            await clients[2].close()
            stopped = time.monotonic()
            await anyio.sleep(3.0)
            ended = time.monotonic()
            tg.cancel_scope.cancel()

    before = len([t for t in grants if t < stopped]) / (stopped - started)
    after = len([t for t in grants if stopped + 0.5 <= t < ended]) / (ended - stopped - 0.5)
    worst = max_in_window(grants)
    leases = [limiter.leases for limiter in limiters]
    print(f"worst 1 s window {worst}; {before:.1f}/s with 3, {after:.1f}/s with 2; {leases=}")
    assert worst <= 25
    assert after >= 18
    assert all(lim.leases > 0 for lim in limiters)


# -- dedup cache -----------------------------------------------------------------------------


async def test_thirty_identical_calls_across_two_replicas_run_once(settings: Settings) -> None:
    policy = CachePolicy(ttl=60.0, wait=10.0)
    async with replicas(settings, 3) as (nc_a, nc_b, nc_c):
        caches = [
            DedupCache(policy, agent="svc", version="1", store=await bucket(nc, "cache"))
            for nc in (nc_a, nc_b)
        ]
        handler = Dependency(healthy=True)
        handler.block = anyio.Event()
        replies: list[Reply] = []

        async def call(i: int) -> None:
            cache = caches[i % 2]
            replies.append(await cache(make_ctx({"doc": "same"}, f"t{i}"), handler))

        async with anyio.create_task_group() as tg:
            for i in range(30):
                tg.start_soon(call, i)
            # 14 local waiters per replica, and one replica waits for the other's claim.
            await wait_until(lambda: sum(c.waits for c in caches) == 29)
            # Give a wrong implementation (a waiter that gives up early) time to run it twice.
            await anyio.sleep(0.5)
            assert handler.calls == 1
            handler.block.set()

        assert handler.calls == 1
        assert len(replies) == 30
        assert sorted(r.cached for r in replies) == [False] + [True] * 29
        assert {r.task_id for r in replies} == {f"t{i}" for i in range(30)}
        assert all(r.output == "ok" for r in replies)

        store = await bucket(nc_c, "cache")
        key = cache_key("svc", "1", "handle", {"doc": "same"})
        assert await store.get(f"svc.claim.{key}") is None  # released once the result was stored
        late = DedupCache(policy, agent="svc", version="1", store=store)
        reply = await late(make_ctx({"doc": "same"}, "t99"), handler)
        assert reply.cached
        assert reply.task_id == "t99"
        assert handler.calls == 1


async def test_a_dead_claimant_delays_others_only_up_to_wait(settings: Settings, nc: NATS) -> None:
    store = await bucket(nc, "cache")
    policy = CachePolicy(ttl=60.0, wait=1.0)
    key = cache_key("svc", "1", "handle", 7)
    await store.create(f"svc.claim.{key}", b"1", ttl=60)  # a replica that claimed, then died
    handler = Dependency(healthy=True)
    cache = DedupCache(policy, agent="svc", version="1", store=store)
    started = time.monotonic()
    reply = await cache(make_ctx(7), handler)
    waited = time.monotonic() - started
    assert reply.ok
    assert not reply.cached
    assert handler.calls == 1
    assert 0.9 <= waited < 3.0


async def test_cached_values_carry_a_ttl_in_kv(settings: Settings, nc: NATS) -> None:
    store = await bucket(nc, "cache")
    cache = DedupCache(CachePolicy(ttl=1.0), agent="svc", version="1", store=store)
    await cache(make_ctx(1), Dependency(healthy=True))
    key = f"svc.val.{cache_key('svc', '1', 'handle', 1)}"
    assert await store.get(key) is not None
    with anyio.fail_after(5.0):
        while await store.get(key) is not None:
            await anyio.sleep(0.1)


async def test_idempotency_store_round_trip(nc: NATS) -> None:
    records = IdempotencyStore(await bucket(nc, "cache"), owner="svc")
    task = Task(id="run-1/1.then.0/2", agent="svc", run_id="run-1", step="1.then.0")
    assert await records.get(task.id) is None
    reply = ok_reply(task, {"answer": 42}, duration_ms=3.5)
    await records.put(task.id, reply)
    again = await records.get(task.id)
    assert again is not None
    assert again.cached
    assert (again.task_id, again.output, again.duration_ms) == (task.id, {"answer": 42}, 3.5)
    assert records.key(task.id).startswith("svc.task.")
    assert records.key(task.id) in await (await bucket(nc, "cache")).keys()
