"""Retry: exponential backoff with full jitter, in process (direct) or through NAK (durable).

Only retryable kinds are retried (``transient``, ``timeout``, ``breaker_open``,
``rate_limited``); ``permanent`` and ``invalid_input`` never are, and cancellation is an
exception this middleware never sees as a reply, so it is never retried either.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import anyio

from bus.errors import is_retryable
from bus.messages import Reply
from bus.middleware.clock import Sleep
from bus.middleware.context import CallContext, Middleware, Next
from bus.policies import RetryPolicy

Random = Callable[[], float]


def backoff_delay(policy: RetryPolicy, attempt: int, rng: Random) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based) before the next one.

    The backoff is ``base * 2**(attempt-1)`` capped at ``max``; with jitter the delay is
    uniform in ``[0, backoff]`` ("full jitter"), so replicas that failed together do not retry
    together. Pure: ``rng`` returns a float in ``[0, 1)``.
    """
    exponent = min(max(attempt - 1, 0), 64)  # beyond 2**64 the cap wins anyway
    backoff = min(policy.max, policy.base * 2.0**exponent)
    return backoff * rng() if policy.jitter else backoff


def retry_delay_for(policy: RetryPolicy, reply: Reply, attempt: int, rng: Random) -> float:
    """The delay before retrying ``reply``'s failure: its ``retry_after`` if it gave one."""
    error = reply.error
    if error is not None and error.retry_after is not None:
        return max(error.retry_after, 0.0)
    return backoff_delay(policy, attempt, rng)


def retry(
    policy: RetryPolicy, *, sleep: Sleep = anyio.sleep, rng: Random = random.random
) -> Middleware:
    """A middleware that retries retryable failures of the chain below.

    Direct and event mode: up to ``policy.attempts`` tries in this process, sleeping the
    backoff (or the error's ``retry_after``) in between; it stops early when the next try
    would start after ``ctx.deadline``. The number of extra tries is left in
    ``ctx.extra["retries"]`` for metrics.

    Durable mode: one try per delivery. On a retryable failure with ``ctx.attempt <
    ctx.max_attempts`` it sets ``ctx.retry_delay`` (backoff for ``ctx.attempt``, or
    ``retry_after``) and returns the error reply; the runtime then NAKs with that delay, so the
    retry survives a crash and may run on another replica. At the last attempt it leaves
    ``retry_delay`` unset and the runtime dead-letters the task (reason ``max_deliver``).
    An open breaker's ``retry_after`` (time until it lets a probe through) is honoured only in
    durable mode; a direct caller gets ``breaker_open`` after the usual short backoff.

    Args:
        policy: attempts, base, cap and jitter.
        sleep: how to wait (tests pass a manual clock's sleep).
        rng: uniform ``[0, 1)`` source for the jitter.
    """

    async def retry_mw(ctx: CallContext, call_next: Next) -> Reply:
        if ctx.mode == "durable":
            reply = await call_next(ctx)
            if _retryable(reply) and ctx.attempt < ctx.max_attempts:
                ctx.retry_delay = retry_delay_for(policy, reply, ctx.attempt, rng)
            return reply
        tries = 1
        while True:
            reply = await call_next(ctx)
            if reply.error is None or not _retryable(reply) or tries >= policy.attempts:
                return reply
            if reply.error.kind == "breaker_open":
                delay = backoff_delay(policy, tries, rng)
            else:
                delay = retry_delay_for(policy, reply, tries, rng)
            remaining = ctx.remaining()
            if remaining is not None and remaining <= delay:
                return reply
            await sleep(delay)
            tries += 1
            ctx.extra["retries"] = tries - 1

    return retry_mw


def _retryable(reply: Reply) -> bool:
    return reply.error is not None and is_retryable(reply.error.kind)
