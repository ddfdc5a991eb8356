"""Token bucket and shared-budget lease arithmetic (pure), and the local limiter."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bus.middleware.bucket import LimitRecord, TokenBucketCore, lease
from bus.middleware.clock import ManualClock
from bus.middleware.ratelimit import RateLimiter
from bus.policies import RateLimit


def test_bucket_starts_full_and_refills_at_rate() -> None:
    clock = ManualClock()
    bucket = TokenBucketCore(rate=10, per=1.0, burst=3, clock=clock)
    assert [bucket.try_take() for _ in range(4)] == [True, True, True, False]
    assert bucket.wait_time() == pytest.approx(0.1)
    clock.advance(0.1)
    assert bucket.try_take()
    assert not bucket.try_take()
    clock.advance(100.0)
    assert bucket.available() == 3  # never above burst


def test_bucket_take_up_to_and_give_back() -> None:
    clock = ManualClock()
    bucket = TokenBucketCore(rate=1, per=2.0, burst=4, clock=clock)
    assert bucket.take_up_to(10) == 4
    assert bucket.take_up_to(10) == 0
    assert bucket.wait_time(2) == pytest.approx(4.0)
    bucket.give_back(1)
    assert bucket.take_up_to(10) == 1


def test_bucket_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucketCore(rate=0, per=1.0, burst=1, clock=ManualClock())


requests = st.lists(st.tuples(st.floats(0.0, 2.0), st.integers(1, 4)), max_size=60)


@settings(max_examples=300, deadline=None)
@given(
    rate=st.floats(0.5, 50.0),
    per=st.floats(0.1, 5.0),
    burst=st.integers(1, 10),
    steps=requests,
    partial=st.booleans(),
)
def test_bucket_never_admits_more_than_burst_plus_refill(
    rate: float, per: float, burst: int, steps: list[tuple[float, int]], partial: bool
) -> None:
    clock = ManualClock()
    bucket = TokenBucketCore(rate, per, burst, clock)
    grants: list[tuple[float, int]] = []
    for dt, n in steps:
        clock.advance(dt)
        got = bucket.take_up_to(n) if partial else (n if bucket.try_take(n) else 0)
        grants.append((clock(), got))
        assert 0.0 <= bucket.tokens <= burst
    for i, (start, _) in enumerate(grants):
        admitted = 0
        for end, got in grants[i:]:
            admitted += got
            assert admitted <= burst + rate * (end - start) / per + 1e-6


@settings(max_examples=300, deadline=None)
@given(
    rate=st.floats(0.5, 50.0),
    burst=st.integers(1, 10),
    steps=st.lists(st.tuples(st.floats(-0.5, 1.0), st.integers(1, 5)), max_size=60),
)
def test_shared_leases_keep_the_global_bound_even_with_clock_skew(
    rate: float, burst: int, steps: list[tuple[float, int]]
) -> None:
    policy = RateLimit(rate=rate, burst=burst)
    record: LimitRecord | None = None
    now = 1_000.0
    first: float | None = None
    latest = now
    total = 0
    for dt, want in steps:
        # replicas' clocks disagree: a lease may be taken "in the past"
        now += dt
        first = now if first is None else first
        latest = max(latest, now)
        record, taken, wait = lease(record, now, want, policy)
        assert 0 <= taken <= want
        assert (taken == 0) == (wait > 0)
        total += taken
        assert total <= burst + rate * (latest - first) + 1e-6


def test_lease_from_an_empty_budget_says_how_long_to_wait() -> None:
    policy = RateLimit(rate=20, burst=5, lease=2)
    record, taken, wait = lease(None, 0.0, 2, policy)
    assert (taken, wait, record.tokens) == (2, 0.0, 3.0)
    record, taken, _ = lease(record, 0.0, 10, policy)
    assert (taken, record.tokens) == (3, 0.0)
    _, taken, wait = lease(record, 0.025, 1, policy)
    assert taken == 0
    assert wait == pytest.approx(0.025)


async def test_limiter_acquire_waits_for_tokens_and_records_the_wait() -> None:
    clock = ManualClock()
    limiter = RateLimiter(RateLimit(rate=4, burst=2), key="k", clock=clock, sleep=clock.sleep)
    await limiter.acquire(2)
    assert limiter.waited_seconds == 0.0
    await limiter.acquire(3)  # more than burst: taken as it refills
    assert clock() - 1000.0 == pytest.approx(0.75)
    assert limiter.waited_seconds == pytest.approx(0.75)
    assert limiter.snapshot()["granted"] == 5


async def test_limiter_admit_up_to_takes_what_is_there() -> None:
    clock = ManualClock()
    limiter = RateLimiter(RateLimit(rate=10, burst=5), key="k", clock=clock, sleep=clock.sleep)
    assert await limiter.admit_up_to(3) == 3
    assert await limiter.admit_up_to(3) == 2
    assert await limiter.admit_up_to(3) == 1  # waited for one token
    assert clock() - 1000.0 == pytest.approx(0.1)
    limiter.refund(1)
    assert await limiter.admit_up_to(3) == 1
    assert clock() - 1000.0 == pytest.approx(0.1)
