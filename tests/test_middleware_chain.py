"""The chain without NATS: handler adapter, error boundary, timeout, and the documented order."""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import msgspec
import pytest
from structlog.testing import capture_logs

from bus.agent import Agent, HandlerSpec
from bus.errors import TransientError
from bus.messages import Reply, Task, ok_reply
from bus.middleware.boundary import error_boundary
from bus.middleware.breaker import CircuitBreaker
from bus.middleware.cache import DedupCache
from bus.middleware.clock import ManualClock
from bus.middleware.context import CallContext, Middleware, Next
from bus.middleware.defaults import Resources, chain_for, resilience_for
from bus.middleware.handler import handler_adapter
from bus.middleware.ratelimit import RateLimiter
from bus.middleware.timeout import timeout
from bus.policies import BreakerPolicy, CachePolicy, RateLimit, RetryPolicy


class Point(msgspec.Struct):
    x: int
    y: int


class Sum(msgspec.Struct):
    total: int


agent = Agent("calc")


@agent.handler
async def add(p: Point) -> Sum:
    return Sum(p.x + p.y)


@agent.handler
def add_sync(p: Point) -> Sum:
    return Sum(p.x + p.y + threading.get_ident() * 0)


@agent.handler
async def with_context(ctx: CallContext) -> dict[str, Any]:
    return {"mode": ctx.mode, "input": ctx.input}


@agent.handler
async def no_args() -> str:
    return "hi"


@agent.handler
async def fails(p: Point) -> Sum:
    raise TransientError("upstream 503", retry_after=2.0)


@agent.handler
async def buggy(p: Point) -> Sum:
    missing: dict[str, Sum] = {}
    return missing["key"]


def make_ctx(spec: HandlerSpec, input: Any = None, **kw: Any) -> CallContext:
    return CallContext(
        Task(id="t1", agent="calc", run_id="r1", step="0", input=input),
        spec,
        agent="calc",
        version="1",
        mode=kw.pop("mode", "direct"),
        **kw,
    )


# -- handler adapter -------------------------------------------------------------------------


async def test_adapter_converts_input_and_output() -> None:
    spec = agent.handlers["add"]
    ctx = make_ctx(spec, {"x": 2, "y": 3})
    reply = await handler_adapter(spec)(ctx)
    assert reply.ok
    assert reply.output == {"total": 5}
    assert ctx.input == Point(2, 3)
    assert (reply.task_id, reply.run_id, reply.step, reply.agent) == ("t1", "r1", "0", "calc")


async def test_adapter_answers_invalid_input_naming_the_field() -> None:
    spec = agent.handlers["add"]
    reply = await handler_adapter(spec)(make_ctx(spec, {"x": 2, "y": "three"}))
    assert reply.error is not None
    assert reply.error.kind == "invalid_input"
    assert "$.y" in reply.error.message


async def test_adapter_runs_sync_handlers_in_a_thread() -> None:
    spec = agent.handlers["add_sync"]
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def record(p: Point) -> Sum:
        seen.append(threading.get_ident())
        return Sum(p.x)

    spec = msgspec.structs.replace(spec, func=record)
    reply = await handler_adapter(spec)(make_ctx(spec, {"x": 1, "y": 0}))
    assert reply.ok
    assert seen
    assert seen[0] != loop_thread


async def test_adapter_passes_the_context_or_nothing() -> None:
    spec = agent.handlers["with_context"]
    reply = await handler_adapter(spec)(make_ctx(spec, {"a": 1}))
    assert reply.output == {"mode": "direct", "input": {"a": 1}}
    spec = agent.handlers["no_args"]
    assert (await handler_adapter(spec)(make_ctx(spec))).output == "hi"


async def test_adapter_turns_exceptions_into_error_replies_of_their_kind() -> None:
    spec = agent.handlers["fails"]
    reply = await handler_adapter(spec)(make_ctx(spec, {"x": 1, "y": 1}))
    assert reply.error is not None
    assert (reply.error.kind, reply.error.retry_after) == ("transient", 2.0)
    assert reply.error.type == "TransientError"
    spec = agent.handlers["buggy"]
    reply = await handler_adapter(spec)(make_ctx(spec, {"x": 1, "y": 1}))
    assert reply.error is not None
    assert reply.error.kind == "permanent"


async def test_adapter_lets_cancellation_through() -> None:
    async def cancelled(p: Point) -> Sum:
        raise anyio.get_cancelled_exc_class()

    spec = msgspec.structs.replace(agent.handlers["add"], func=cancelled)
    with pytest.raises(anyio.get_cancelled_exc_class()):
        await handler_adapter(spec)(make_ctx(spec, {"x": 1, "y": 1}))


# -- error boundary and timeout --------------------------------------------------------------


async def test_boundary_turns_escaped_exceptions_into_replies_and_logs_them() -> None:
    async def broken(ctx: CallContext) -> Reply:
        raise RuntimeError("middleware bug")

    ctx = make_ctx(agent.handlers["add"])
    with capture_logs() as logs:
        reply = await error_boundary(ctx, broken)
    assert reply.error is not None
    assert reply.error.kind == "permanent"
    assert reply.error.message == "middleware bug"
    assert logs[0]["event"] == "chain_failed"
    assert logs[0]["log_level"] == "error"

    async def refused(ctx: CallContext) -> Reply:
        raise TransientError("flaky middleware")

    with capture_logs():
        reply = await error_boundary(ctx, refused)
    assert reply.error is not None
    assert reply.error.kind == "transient"  # errors of the bus keep their kind


async def test_boundary_never_swallows_cancellation() -> None:
    async def cancelled(ctx: CallContext) -> Reply:
        raise anyio.get_cancelled_exc_class()

    with pytest.raises(anyio.get_cancelled_exc_class()):
        await error_boundary(make_ctx(agent.handlers["add"]), cancelled)


async def test_timeout_cancels_the_handler() -> None:
    cancelled = anyio.Event()

    async def hang(ctx: CallContext) -> Reply:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()
        raise AssertionError

    started = time.monotonic()
    reply = await timeout(0.05)(make_ctx(agent.handlers["add"]), hang)
    assert reply.error is not None
    assert reply.error.kind == "timeout"
    assert cancelled.is_set()
    assert time.monotonic() - started < 5.0


async def test_timeout_uses_the_task_deadline() -> None:
    async def hang(ctx: CallContext) -> Reply:
        await anyio.sleep_forever()
        raise AssertionError

    ctx = make_ctx(agent.handlers["add"], deadline=time.monotonic() + 0.05)
    reply = await timeout(3600.0)(ctx, hang)
    assert reply.error is not None
    assert reply.error.message == "deadline passed"


async def test_timeout_does_not_relabel_a_timeout_error_raised_below() -> None:
    async def raises(ctx: CallContext) -> Reply:
        raise TimeoutError("from a custom middleware")

    with pytest.raises(TimeoutError, match="custom"):
        await timeout(30.0)(make_ctx(agent.handlers["add"]), raises)


async def test_timeout_passes_fast_replies_through() -> None:
    async def quick(ctx: CallContext) -> Reply:
        return ok_reply(ctx.task, 1)

    assert (await timeout(1.0)(make_ctx(agent.handlers["add"]), quick)).ok


# -- rate limit as middleware ----------------------------------------------------------------


async def test_rate_limited_calls_wait_instead_of_failing() -> None:
    clock = ManualClock()
    limiter = RateLimiter(
        RateLimit(rate=2, per=1.0, burst=1), key="k", clock=clock, sleep=clock.sleep
    )

    async def ok(ctx: CallContext) -> Reply:
        return ok_reply(ctx.task, clock())

    contexts = [make_ctx(agent.handlers["add"]) for _ in range(5)]
    replies = [await limiter(ctx, ok) for ctx in contexts]
    assert all(r.ok for r in replies)
    assert [ctx.extra.get("ratelimit_wait") for ctx in contexts] == [None, 0.5, 0.5, 0.5, 0.5]
    assert [r.output - 1000.0 for r in replies] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])
    assert limiter.waited_seconds == pytest.approx(2.0)


async def test_admitted_calls_take_no_token() -> None:
    clock = ManualClock()
    limiter = RateLimiter(RateLimit(rate=1, burst=1), key="k", clock=clock, sleep=clock.sleep)
    assert await limiter.admit_up_to(5) == 1

    async def ok(ctx: CallContext) -> Reply:
        return ok_reply(ctx.task, None)

    ctx = make_ctx(agent.handlers["add"])
    ctx.admitted = True
    await limiter(ctx, ok)
    assert clock.slept == []


async def test_rate_limit_wait_is_bounded_by_the_deadline() -> None:
    limiter = RateLimiter(RateLimit(rate=1, per=3600.0, burst=1), key="k")
    calls = 0

    async def ok(ctx: CallContext) -> Reply:
        nonlocal calls
        calls += 1
        return ok_reply(ctx.task, None)

    assert (await limiter(make_ctx(agent.handlers["add"]), ok)).ok
    ctx = make_ctx(agent.handlers["add"], deadline=time.monotonic() + 0.05)
    reply = await limiter(ctx, ok)
    assert reply.error is not None
    assert reply.error.kind == "rate_limited"
    assert calls == 1


# -- the whole chain -------------------------------------------------------------------------


def recorder(name: str, log: list[str]) -> Middleware:
    async def mw(ctx: CallContext, call_next: Next) -> Reply:
        log.append(name)
        return await call_next(ctx)

    return mw


async def test_chain_order_is_the_documented_one() -> None:
    """Outer to inner: outer, boundary, dedup, rate limit, retry, breaker, custom, timeout."""
    log: list[str] = []
    ordered = Agent(
        "ordered",
        retry=RetryPolicy(attempts=2),
        breaker=BreakerPolicy(),
        rate_limit=RateLimit(rate=100, burst=10),
        cache=CachePolicy(),
        middleware=[recorder("custom", log)],
    )

    @ordered.handler
    async def handle(ctx: CallContext) -> str:
        log.append("handler")
        return "ok"

    spec = ordered.handlers["handle"]
    resilience = resilience_for("ordered", "1", spec, Resources())
    assert [type(m) for m in resilience.middleware[:2]] == [DedupCache, RateLimiter]
    assert isinstance(resilience.middleware[3], CircuitBreaker)

    def spy(name: str, target: Any) -> Middleware:
        async def mw(ctx: CallContext, call_next: Next) -> Reply:
            log.append(name)
            reply: Reply = await target(ctx, call_next)
            return reply

        return mw

    names = ["dedup", "rate_limit", "retry", "breaker"]
    resilience.middleware = [spy(n, m) for n, m in zip(names, resilience.middleware, strict=True)]
    chain = chain_for(spec, outer=[recorder("outer", log)], resilience=resilience)

    ctx = make_ctx(spec, {"q": 1})
    reply = await chain(ctx)
    assert reply.ok
    assert log == ["outer", "dedup", "rate_limit", "retry", "breaker", "custom", "handler"]


async def test_chain_boundary_and_timeout_positions() -> None:
    slow_agent = Agent("slowpoke", retry=None, timeout=0.05)
    seen: list[Reply] = []

    @slow_agent.handler
    async def handle(ctx: CallContext) -> str:
        await anyio.sleep_forever()
        return ""

    async def outer(ctx: CallContext, call_next: Next) -> Reply:
        reply = await call_next(ctx)
        seen.append(reply)
        return reply

    async def explode(ctx: CallContext, call_next: Next) -> Reply:
        raise RuntimeError("custom middleware bug")

    async def custom(ctx: CallContext, call_next: Next) -> Reply:
        reply = await call_next(ctx)
        seen.append(reply)
        return reply

    spec = slow_agent.handlers["handle"]
    res = resilience_for("slowpoke", "1", spec, Resources())
    assert res.middleware == []
    spec = msgspec.structs.replace(
        spec, options=msgspec.structs.replace(spec.options, middleware=(custom,))
    )
    reply = await chain_for(spec, outer=[outer], resilience=res)(make_ctx(spec))
    assert reply.error is not None
    assert reply.error.kind == "timeout"
    assert seen[0] is reply  # the custom middleware saw the timeout: the timeout is inside it

    spec = msgspec.structs.replace(
        spec, options=msgspec.structs.replace(spec.options, middleware=(explode,))
    )
    with capture_logs():
        reply = await chain_for(spec, outer=[outer], resilience=res)(make_ctx(spec))
    assert reply.error is not None
    assert reply.error.kind == "permanent"
    assert seen[-1] is reply  # the boundary is inside the outer middleware


async def test_full_chain_retries_through_an_opening_breaker() -> None:
    clock = ManualClock()
    flaky = Agent(
        "flaky",
        retry=RetryPolicy(attempts=6, base=0.1),
        breaker=BreakerPolicy(window=2, min_calls=2, open_for=60.0),
    )
    calls = 0

    @flaky.handler
    async def handle(x: int) -> int:
        nonlocal calls
        calls += 1
        raise TransientError("down")

    spec = flaky.handlers["handle"]
    res = resilience_for("flaky", "1", spec, Resources(clock=clock, sleep=clock.sleep))
    reply = await chain_for(spec, outer=[], resilience=res)(make_ctx(spec, 1))
    assert reply.error is not None
    assert reply.error.kind == "breaker_open"
    assert calls == 2  # the breaker opened after two failures; later attempts failed fast
    assert res.breaker is not None
    assert res.breaker.snapshot()["rejected"] == 4


def test_handlers_with_the_same_policy_share_one_breaker_and_limiter() -> None:
    shared = Agent("svc", breaker=BreakerPolicy(), rate_limit=RateLimit(rate=5))

    @shared.handler
    async def one(x: int) -> int:
        return x

    @shared.handler(rate_limit=RateLimit(rate=1))
    async def two(x: int) -> int:
        return x

    resources = Resources()
    a = resilience_for("svc", "1", shared.handlers["one"], resources)
    b = resilience_for("svc", "1", shared.handlers["two"], resources)
    assert a.breaker is b.breaker is not None
    assert a.limiter is not None
    assert b.limiter is not None
    assert a.limiter is not b.limiter
    assert a.limiter.key.startswith("svc.")
    assert a.limiter.key != b.limiter.key
