"""Retry: backoff bounds, in-process retries, durable NAK delays (no NATS, no real sleeps)."""

from __future__ import annotations

import random
import time
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bus.agent import Agent
from bus.messages import ErrorInfo, Reply, Task, error_reply, ok_reply
from bus.middleware.clock import ManualClock
from bus.middleware.context import CallContext, Mode
from bus.middleware.retry import backoff_delay, retry
from bus.policies import RetryPolicy

agent = Agent("flaky")


@agent.handler
async def work(x: Any) -> Any:
    return x


SPEC = agent.handlers["work"]
POLICY = RetryPolicy(attempts=4, base=0.5, max=3.0)


def make_ctx(mode: Mode = "direct", *, attempt: int = 1, max_attempts: int = 1) -> CallContext:
    return CallContext(
        Task(id="t1", agent="flaky"),
        SPEC,
        agent="flaky",
        version="1",
        mode=mode,
        attempt=attempt,
        max_attempts=max_attempts,
    )


class Script:
    """Answers the scripted error kinds in turn, then ok."""

    def __init__(self, *kinds: str, retry_after: float | None = None) -> None:
        self.kinds = list(kinds)
        self.retry_after = retry_after
        self.calls = 0

    async def __call__(self, ctx: CallContext) -> Reply:
        self.calls += 1
        if self.kinds:
            kind: Any = self.kinds.pop(0)
            return error_reply(ctx.task, ErrorInfo(kind, "boom", retry_after=self.retry_after))
        return ok_reply(ctx.task, "done")


@given(
    attempt=st.integers(1, 200),
    base=st.floats(0.001, 5.0),
    cap=st.floats(0.001, 60.0),
    u=st.floats(0.0, 0.999999),
)
def test_backoff_is_full_jitter_under_the_cap(
    attempt: int, base: float, cap: float, u: float
) -> None:
    policy = RetryPolicy(attempts=3, base=base, max=cap)
    delay = backoff_delay(policy, attempt, lambda: u)
    bound = min(cap, base * 2.0 ** min(attempt - 1, 64))
    assert 0.0 <= delay <= bound
    assert delay == pytest.approx(u * bound)


def test_backoff_doubles_without_jitter() -> None:
    policy = RetryPolicy(attempts=9, base=0.5, max=3.0, jitter=False)
    assert [backoff_delay(policy, n, random.random) for n in range(1, 6)] == [
        0.5,
        1.0,
        2.0,
        3.0,
        3.0,
    ]


async def test_retries_transient_failures_with_backoff() -> None:
    clock = ManualClock()
    mw = retry(POLICY, sleep=clock.sleep, rng=lambda: 1.0)
    handler = Script("transient", "timeout", "breaker_open")
    ctx = make_ctx()
    reply = await mw(ctx, handler)
    assert reply.ok
    assert handler.calls == 4
    assert clock.slept == [0.5, 1.0, 2.0]
    assert ctx.extra["retries"] == 3


async def test_gives_up_after_attempts() -> None:
    clock = ManualClock()
    handler = Script(*["transient"] * 10)
    reply = await retry(POLICY, sleep=clock.sleep)(make_ctx(), handler)
    assert reply.error is not None
    assert reply.error.kind == "transient"
    assert handler.calls == POLICY.attempts


@pytest.mark.parametrize("kind", ["permanent", "invalid_input"])
async def test_never_retries_permanent_failures(kind: str) -> None:
    clock = ManualClock()
    handler = Script(kind)
    reply = await retry(POLICY, sleep=clock.sleep)(make_ctx(), handler)
    assert reply.error is not None
    assert reply.error.kind == kind
    assert handler.calls == 1
    assert clock.slept == []


async def test_honours_retry_after() -> None:
    clock = ManualClock()
    handler = Script("transient", retry_after=7.5)
    reply = await retry(POLICY, sleep=clock.sleep, rng=lambda: 0.0)(make_ctx(), handler)
    assert reply.ok
    assert clock.slept == [7.5]


async def test_stops_when_the_next_try_would_miss_the_deadline() -> None:
    clock = ManualClock()
    handler = Script("transient", retry_after=60.0)
    ctx = make_ctx()
    ctx.deadline = time.monotonic() + 10.0
    reply = await retry(POLICY, sleep=clock.sleep)(ctx, handler)
    assert not reply.ok
    assert handler.calls == 1
    assert clock.slept == []


async def test_never_retries_cancellation() -> None:
    calls = 0

    async def cancelled(ctx: CallContext) -> Reply:
        nonlocal calls
        calls += 1
        raise anyio.get_cancelled_exc_class()

    with pytest.raises(anyio.get_cancelled_exc_class()):
        await retry(POLICY, sleep=ManualClock().sleep)(make_ctx(), cancelled)
    assert calls == 1


async def test_durable_mode_sets_the_nak_delay_instead_of_looping() -> None:
    clock = ManualClock()
    mw = retry(POLICY, sleep=clock.sleep, rng=lambda: 1.0)
    handler = Script("transient", "transient")
    ctx = make_ctx("durable", attempt=3, max_attempts=4)
    reply = await mw(ctx, handler)
    assert not reply.ok
    assert handler.calls == 1
    assert clock.slept == []
    assert ctx.retry_delay == 2.0  # backoff after the 3rd attempt: 0.5 * 2**2


async def test_durable_mode_honours_retry_after() -> None:
    handler = Script("rate_limited", retry_after=4.0)
    ctx = make_ctx("durable", attempt=1, max_attempts=4)
    await retry(POLICY)(ctx, handler)
    assert ctx.retry_delay == 4.0


async def test_durable_mode_leaves_the_last_attempt_to_the_dead_letter_queue() -> None:
    ctx = make_ctx("durable", attempt=4, max_attempts=4)
    await retry(POLICY)(ctx, Script("transient"))
    assert ctx.retry_delay is None


async def test_durable_mode_never_retries_permanent_failures() -> None:
    ctx = make_ctx("durable", attempt=1, max_attempts=4)
    await retry(POLICY)(ctx, Script("permanent"))
    assert ctx.retry_delay is None
