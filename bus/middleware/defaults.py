"""Build a handler's chain from its options: the resilience middleware and the full order.

The order, outer to inner (see ``bus.middleware.chain`` for why)::

    *outer (context, metrics, logging)  error_boundary  dedup  rate_limit  retry  breaker
    *custom (Options.middleware)  timeout  handler

The breaker and the rate limiter protect a dependency, so they belong to the agent: handlers of
one agent configured with the same policy share one instance (and, in shared mode, one KV
key ``<agent>.<policy hash>``); a handler with a policy of its own gets its own.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import anyio

from bus import codec
from bus.agent import HandlerSpec
from bus.middleware.boundary import error_boundary
from bus.middleware.breaker import CircuitBreaker
from bus.middleware.cache import DedupCache
from bus.middleware.chain import build_chain
from bus.middleware.clock import Clock, Sleep
from bus.middleware.context import Middleware, Next
from bus.middleware.handler import handler_adapter
from bus.middleware.ratelimit import RateLimiter
from bus.middleware.retry import Random, retry
from bus.middleware.timeout import timeout
from bus.transport.kv import Bucket

T = TypeVar("T")


class Resources:
    """What the resilience middleware of one process are built with.

    Args:
        cache: KV ``bus_cache`` (dedup results); ``None`` keeps the dedup cache local.
        breakers: KV ``bus_breakers``; ``None`` keeps every breaker local.
        limits: KV ``bus_limits``; ``None`` keeps every rate limit local.
        clock: monotonic seconds; ``wall``: epoch seconds.
        sleep: how middleware wait; ``rng``: uniform ``[0, 1)`` for retry jitter.
    """

    __slots__ = ("_instances", "breakers", "cache", "clock", "limits", "rng", "sleep", "wall")

    def __init__(
        self,
        *,
        cache: Bucket | None = None,
        breakers: Bucket | None = None,
        limits: Bucket | None = None,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
        sleep: Sleep = anyio.sleep,
        rng: Random = random.random,
    ) -> None:
        self.cache = cache
        self.breakers = breakers
        self.limits = limits
        self.clock = clock
        self.wall = wall
        self.sleep = sleep
        self.rng = rng
        self._instances: dict[tuple[str, str], Any] = {}

    def instance(self, kind: str, key: str, make: Callable[[], T]) -> T:
        """The one ``kind`` object for ``key`` in this process, made on first use."""
        found = self._instances.get((kind, key))
        if found is None:
            found = self._instances[kind, key] = make()
        result: T = found
        return result


class ResilienceSet:
    """A handler's resilience middleware, in chain order, and the stateful ones by name.

    The runtime reads ``breaker`` (durable fetch loops ``wait_permitted`` before fetching),
    ``limiter`` (they fetch what ``admit_up_to`` admits) and all three for stats.
    """

    __slots__ = ("breaker", "cache", "limiter", "middleware")

    def __init__(
        self,
        middleware: list[Middleware],
        *,
        breaker: CircuitBreaker | None = None,
        limiter: RateLimiter | None = None,
        cache: DedupCache | None = None,
    ) -> None:
        self.middleware = middleware
        self.breaker = breaker
        self.limiter = limiter
        self.cache = cache


def policy_key(agent: str, policy: Any) -> str:
    """``<agent>.<hash of the policy>``: the shared key of an agent's breaker or limiter."""
    digest = hashlib.blake2b(codec.canonical(policy), digest_size=4).hexdigest()
    return f"{agent}.{digest}"


def resilience_for(
    agent: str, version: str, spec: HandlerSpec, resources: Resources
) -> ResilienceSet:
    """The dedup, rate-limit, retry and breaker middleware ``spec.options`` asks for.

    Order: dedup, rate_limit, retry, breaker (only those configured).
    """
    options = spec.options
    res = resources
    middleware: list[Middleware] = []
    cache = limiter = breaker = None
    if options.cache is not None:
        cache = DedupCache(
            options.cache,
            agent=agent,
            version=version,
            store=res.cache,
            clock=res.clock,
            wall=res.wall,
            sleep=res.sleep,
        )
        middleware.append(cache)
    if (limit := options.rate_limit) is not None:
        key = policy_key(agent, limit)
        limiter = res.instance(
            "limiter",
            key,
            lambda: RateLimiter(
                limit, key=key, store=res.limits, clock=res.clock, sleep=res.sleep, wall=res.wall
            ),
        )
        middleware.append(limiter)
    if options.retry is not None:
        middleware.append(retry(options.retry, sleep=res.sleep, rng=res.rng))
    if (policy := options.breaker) is not None:
        key = policy_key(agent, policy)
        breaker = res.instance(
            "breaker",
            key,
            lambda: CircuitBreaker(
                policy, key=key, store=res.breakers, clock=res.clock, wall=res.wall, sleep=res.sleep
            ),
        )
        middleware.append(breaker)
    return ResilienceSet(middleware, breaker=breaker, limiter=limiter, cache=cache)


def chain_for(spec: HandlerSpec, *, outer: Sequence[Middleware], resilience: ResilienceSet) -> Next:
    """The frozen chain of one handler:
    ``[*outer, error_boundary, *resilience, *custom, timeout, handler]``."""
    middleware: list[Middleware] = [
        *outer,
        error_boundary,
        *resilience.middleware,
        *spec.options.middleware,
        timeout(spec.options.timeout),
    ]
    return build_chain(middleware, handler_adapter(spec))
