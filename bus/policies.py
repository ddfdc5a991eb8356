"""Middleware policies: value objects, each field documented, sane defaults.

They say *what* a middleware should do; the middleware modules decide *how*.
"""

from __future__ import annotations

import msgspec


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Exponential backoff with full jitter.

    Attributes:
        attempts: total tries including the first (1 = no retry). In durable mode this is the
            consumer's ``max_deliver``; exhausting it sends the task to the DLQ.
        base: delay before the second try, in seconds (doubled each time).
        max: cap on any single delay, in seconds.
        jitter: full jitter (a uniform delay in ``[0, backoff]``), so replicas don't retry in
            lockstep.
    """

    attempts: int = 3
    base: float = 0.2
    max: float = 10.0
    jitter: bool = True


class BreakerPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Circuit breaker over a count-based sliding window (resilience4j semantics).

    Attributes:
        window: how many of the latest calls are looked at.
        min_calls: no decision is taken before this many calls are in the window.
        failure_rate: open when failures / calls reaches this (0..1).
        slow_call_duration: a call longer than this many seconds counts as slow (``None``: off).
        slow_call_rate: open when slow calls / calls reaches this (0..1).
        open_for: seconds to stay open before letting trial calls through.
        half_open_calls: trial calls allowed in half-open; their outcome closes or reopens.
        shared: keep the state in KV bucket ``bus_breakers`` so all replicas open and close
            together.
    """

    window: int = 20
    min_calls: int = 10
    failure_rate: float = 0.5
    slow_call_duration: float | None = None
    slow_call_rate: float = 1.0
    open_for: float = 5.0
    half_open_calls: int = 3
    shared: bool = False


class RateLimit(msgspec.Struct, frozen=True, kw_only=True):
    """Token bucket: ``rate`` calls per ``per`` seconds, bursts up to ``burst``.

    Attributes:
        rate: tokens added per ``per`` seconds.
        per: the period of ``rate``, in seconds.
        burst: bucket size: calls allowed at once after a quiet period.
        shared: one budget across all replicas, kept in KV bucket ``bus_limits``.
        lease: tokens a replica takes from the shared budget at a time, so the KV is not
            written on every call.
    """

    rate: float
    per: float = 1.0
    burst: int = 1
    shared: bool = False
    lease: int = 2


class CachePolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Dedup cache of replies by input: same agent, version and input give the same output.

    Attributes:
        ttl: seconds a cached reply lives (in the local LRU and in KV ``bus_cache``).
        local_size: entries kept in the process-local LRU in front of the KV.
        wait: seconds a replica waits for another replica's in-flight computation of the same
            key (single flight) before computing it itself.
    """

    ttl: float = 3600.0
    local_size: int = 1024
    wait: float = 30.0
