"""Circuit breaker: the pure state machine with a manual clock, and the middleware (no NATS)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bus.agent import Agent
from bus.messages import ErrorInfo, Reply, Task, error_reply, ok_reply
from bus.middleware.breaker import BreakerCore, CircuitBreaker
from bus.middleware.breaker_core import FAILED, OK, SLOW, SLOW_FAILED
from bus.middleware.clock import ManualClock
from bus.middleware.context import CallContext
from bus.policies import BreakerPolicy

POLICY = BreakerPolicy(window=10, min_calls=4, failure_rate=0.5, open_for=5.0, half_open_calls=2)

agent = Agent("dep")


@agent.handler
async def call(x: Any) -> Any:
    return x


SPEC = agent.handlers["call"]


def make_ctx() -> CallContext:
    return CallContext(Task(id="t1", agent="dep"), SPEC, agent="dep", version="1", mode="direct")


def feed(core: BreakerCore, *codes: int) -> None:
    for code in codes:
        generation = core.try_acquire()
        assert generation is not None
        core.record(generation, code)


def test_stays_closed_before_min_calls() -> None:
    core = BreakerCore(POLICY, ManualClock())
    feed(core, FAILED, FAILED, FAILED)
    assert core.state == "closed"
    feed(core, FAILED)
    assert core.state == "open"


def test_opens_exactly_at_the_failure_rate() -> None:
    core = BreakerCore(POLICY, ManualClock())
    feed(core, OK, OK, OK, FAILED, OK, FAILED)  # 2/6 failed: under 0.5
    assert core.state == "closed"
    feed(core, FAILED)  # 3/7
    assert core.state == "closed"
    feed(core, FAILED)  # 4/8 = 0.5: the threshold
    assert core.state == "open"
    assert core.try_acquire() is None


def test_window_forgets_old_calls() -> None:
    core = BreakerCore(BreakerPolicy(window=10, min_calls=10, failure_rate=0.5), ManualClock())
    feed(core, FAILED, FAILED, FAILED, *[OK] * 10)
    assert core.counts() == (10, 0, 0)
    feed(core, FAILED, FAILED, FAILED, FAILED)
    assert core.state == "closed"  # 4/10 in the window
    feed(core, FAILED)
    assert core.state == "open"  # 5/10


def test_half_open_after_open_for_then_closes_after_successful_probes() -> None:
    clock = ManualClock()
    core = BreakerCore(POLICY, clock)
    feed(core, *[FAILED] * 4)
    clock.advance(4.99)
    assert core.state == "open"
    assert core.open_remaining() == pytest.approx(0.01)
    clock.advance(0.01)
    assert core.state == "half_open"
    first, second = core.try_acquire(), core.try_acquire()
    assert first is not None
    assert second is not None
    assert core.try_acquire() is None  # only half_open_calls probes at once
    core.record(first, OK)
    assert core.state == "half_open"
    core.record(second, OK)
    assert core.state == "closed"
    assert core.counts() == (0, 0, 0)


def test_failed_probe_reopens() -> None:
    clock = ManualClock()
    policy = BreakerPolicy(window=4, min_calls=4, failure_rate=0.5, open_for=2.0, half_open_calls=1)
    core = BreakerCore(policy, clock)
    feed(core, *[FAILED] * 4)
    clock.advance(2.0)
    feed(core, FAILED)
    assert core.state == "open"
    clock.advance(1.9)
    assert core.state == "open"  # open_for counts from the reopening
    clock.advance(0.1)
    assert core.state == "half_open"
    feed(core, OK)
    assert core.state == "closed"


def test_half_open_decides_early_when_the_outcome_is_certain() -> None:
    clock = ManualClock()
    policy = BreakerPolicy(window=4, min_calls=4, failure_rate=0.5, open_for=1.0, half_open_calls=4)
    core = BreakerCore(policy, clock)
    feed(core, *[FAILED] * 4)
    clock.advance(1.0)
    feed(core, FAILED, OK)
    assert core.state == "half_open"  # 1 failure of 4 planned: not yet certain
    feed(core, FAILED)  # 2 of 4 planned probes failed: reopening is certain
    assert core.state == "open"


def test_released_probe_permit_is_given_out_again() -> None:
    clock = ManualClock()
    policy = BreakerPolicy(window=4, min_calls=4, open_for=1.0, half_open_calls=1)
    core = BreakerCore(policy, clock)
    feed(core, *[FAILED] * 4)
    clock.advance(1.0)
    generation = core.try_acquire()
    assert generation is not None
    assert core.try_acquire() is None
    core.release(generation)
    assert core.try_acquire() is not None


def test_outcome_of_a_call_admitted_before_opening_is_ignored() -> None:
    clock = ManualClock()
    core = BreakerCore(POLICY, clock)
    early = core.try_acquire()
    assert early is not None
    feed(core, *[FAILED] * 4)
    clock.advance(5.0)
    assert core.state == "half_open"
    core.record(early, OK)  # stale: must not count as a probe
    assert core.probe_calls == 0


def test_slow_calls_open_the_breaker() -> None:
    policy = BreakerPolicy(
        window=4, min_calls=4, failure_rate=1.0, slow_call_duration=1.0, slow_call_rate=0.75
    )
    core = BreakerCore(policy, ManualClock())
    feed(core, SLOW, OK, SLOW)
    assert core.state == "closed"
    feed(core, SLOW)
    assert core.state == "open"


def test_slow_calls_ignored_without_a_slow_threshold() -> None:
    core = BreakerCore(BreakerPolicy(window=4, min_calls=4, failure_rate=1.0), ManualClock())
    feed(core, SLOW, SLOW, SLOW, SLOW_FAILED)
    assert core.state == "closed"


def test_export_and_load_round_trip_across_clocks() -> None:
    clock = ManualClock(100.0)
    core = BreakerCore(POLICY, clock)
    feed(core, *[FAILED] * 4)
    clock.advance(1.0)
    record = core.export(wall_now=5_000.0)
    assert record.state == "open"
    assert record.opened_at == pytest.approx(4_999.0)
    other_clock = ManualClock(70.0)
    other = BreakerCore(POLICY, other_clock)
    other.load(record, wall_now=5_000.0)
    assert other.state == "open"
    assert other.open_remaining() == pytest.approx(4.0)
    other_clock.advance(4.0)
    assert other.state == "half_open"


# -- properties ------------------------------------------------------------------------------

policies = st.builds(
    BreakerPolicy,
    window=st.integers(1, 8),
    min_calls=st.integers(1, 10),
    failure_rate=st.floats(0.05, 1.0),
    slow_call_duration=st.sampled_from([None, 1.0]),
    slow_call_rate=st.floats(0.05, 1.0),
    open_for=st.floats(0.5, 10.0),
    half_open_calls=st.integers(1, 4),
)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.floats(0.0, 6.0)),
        st.tuples(st.just("call"), st.sampled_from([OK, FAILED, SLOW, SLOW_FAILED])),
        st.tuples(st.just("acquire"), st.just(0)),
        st.tuples(st.just("release"), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(policy=policies, ops=steps)
@example(  # half-open exactly at opened_at + open_for, where the float difference rounds down
    policy=BreakerPolicy(window=1, min_calls=1, failure_rate=1.0, open_for=1.6782955291936674),
    ops=[("call", FAILED), ("advance", 1.6782955291936674)],
)
def test_breaker_invariants(policy: BreakerPolicy, ops: list[tuple[str, Any]]) -> None:
    clock = ManualClock()
    core = BreakerCore(policy, clock)
    held: list[int] = []
    last_opened: float | None = None
    for op, arg in ops:
        if op == "advance":
            clock.advance(arg)
        elif op == "call":
            generation = core.try_acquire()
            if generation is not None:
                core.record(generation, arg)
        elif op == "acquire":
            generation = core.try_acquire()
            if generation is not None:
                held.append(generation)
        elif held:
            core.release(held.pop())
        state = core.state
        if core._state == "open" or state == "half_open":
            last_opened = core.opened_at
        if state == "half_open":
            assert last_opened is not None
            # Compared as the breaker does (now >= opened + open_for): the difference of two
            # floats can round below open_for when the sum does not.
            assert clock() >= last_opened + policy.open_for
        if state == "open":
            assert core.try_acquire() is None
        calls, failures, slow = core.counts()
        assert calls <= policy.window
        assert 0 <= failures <= calls
        assert 0 <= slow <= calls
        assert 0 <= core.probes <= policy.half_open_calls


# -- the middleware --------------------------------------------------------------------------


class Dependency:
    """A handler whose outcome the test sets, counting the calls it really receives."""

    def __init__(self) -> None:
        self.calls = 0
        self.kind: str | None = "transient"

    async def __call__(self, ctx: CallContext) -> Reply:
        self.calls += 1
        if self.kind is None:
            return ok_reply(ctx.task, "fine")
        return error_reply(ctx.task, ErrorInfo(self.kind, "down"))  # type: ignore[arg-type]


async def test_open_breaker_answers_at_once_without_calling_the_handler() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(POLICY, key="dep", clock=clock)
    dep = Dependency()
    for _ in range(4):
        await breaker(make_ctx(), dep)
    assert breaker.state == "open"
    assert dep.calls == 4
    ctx = make_ctx()
    reply = await breaker(ctx, dep)
    assert ctx.extra["breaker_state"] == "open"
    assert reply.error is not None
    assert reply.error.kind == "breaker_open"
    assert reply.error.retry_after == pytest.approx(5.0)
    assert dep.calls == 4
    assert breaker.snapshot()["rejected"] == 1

    clock.advance(5.0)  # recovers: probes go through and close it
    dep.kind = None
    for _ in range(2):
        assert (await breaker(make_ctx(), dep)).ok
    assert breaker.state == "closed"
    assert dep.calls == 6


@pytest.mark.parametrize("kind", ["permanent", "invalid_input", "rate_limited", "breaker_open"])
async def test_failures_that_say_nothing_about_the_dependency_do_not_count(kind: str) -> None:
    breaker = CircuitBreaker(POLICY, key="dep", clock=ManualClock())
    dep = Dependency()
    dep.kind = kind
    for _ in range(20):
        await breaker(make_ctx(), dep)
    assert breaker.state == "closed"
    assert breaker.snapshot()["calls"] == 0


async def test_timeouts_count_as_failures() -> None:
    breaker = CircuitBreaker(POLICY, key="dep", clock=ManualClock())
    dep = Dependency()
    dep.kind = "timeout"
    for _ in range(4):
        await breaker(make_ctx(), dep)
    assert breaker.state == "open"


async def test_slow_successes_are_measured_by_the_clock() -> None:
    clock = ManualClock()
    policy = BreakerPolicy(window=2, min_calls=2, slow_call_duration=1.0, slow_call_rate=1.0)
    breaker = CircuitBreaker(policy, key="dep", clock=clock)

    async def slow(ctx: CallContext) -> Reply:
        clock.advance(1.5)
        return ok_reply(ctx.task, None)

    await breaker(make_ctx(), slow)
    await breaker(make_ctx(), slow)
    assert breaker.state == "open"


async def test_wait_permitted_returns_when_half_open() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(POLICY, key="dep", clock=clock, sleep=clock.sleep)
    await breaker.wait_permitted()  # closed: at once
    assert clock.slept == []
    dep = Dependency()
    for _ in range(4):
        await breaker(make_ctx(), dep)
    clock.advance(1.0)
    await breaker.wait_permitted()
    assert sum(clock.slept) == pytest.approx(4.0)
    assert breaker.state == "half_open"


async def test_cancelled_probe_gives_its_permit_back() -> None:
    import anyio

    clock = ManualClock()
    policy = BreakerPolicy(window=2, min_calls=2, open_for=1.0, half_open_calls=1)
    breaker = CircuitBreaker(policy, key="dep", clock=clock)
    dep = Dependency()
    await breaker(make_ctx(), dep)
    await breaker(make_ctx(), dep)
    clock.advance(1.0)
    started = anyio.Event()

    async def hang(ctx: CallContext) -> Reply:
        started.set()
        await anyio.sleep_forever()
        raise AssertionError

    async with anyio.create_task_group() as tg:
        tg.start_soon(breaker, make_ctx(), hang)
        await started.wait()
        assert (await breaker(make_ctx(), dep)).error.kind == "breaker_open"  # type: ignore[union-attr]
        tg.cancel_scope.cancel()
    dep.kind = None
    assert (await breaker(make_ctx(), dep)).ok
    assert breaker.state == "closed"
