"""Dedup cache middleware: equal inputs share one execution and its reply.

The key hashes the agent, its version, the handler and the canonical encoding of the input.
A process-local LRU (with TTL) sits in front of KV ``bus_cache`` (per-key TTL). Single flight:
concurrent identical calls in a process await one execution; across replicas the first one
claims ``<agent>.claim.<key>`` (KV create, with a TTL) and the others poll
``<agent>.val.<key>`` for up to ``policy.wait`` seconds before computing it themselves. Only
``ok`` replies are cached; a cached reply is returned with ``cached=True`` and the current
task's identifiers. Each call leaves ``ctx.extra["cache"]`` = ``"hit"`` or ``"miss"`` for the
metrics middleware.

``IdempotencyStore`` (in ``idempotency``) keeps durable task replies in the same bucket.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from typing import Any

import anyio
import msgspec
import structlog

from bus import codec
from bus.messages import Reply, ok_reply
from bus.middleware.clock import Clock, Sleep
from bus.middleware.context import CallContext, Next
from bus.middleware.idempotency import IdempotencyStore, kv_ttl
from bus.policies import CachePolicy
from bus.transport.kv import Bucket, KeyExistsError

__all__ = ["DedupCache", "IdempotencyStore", "cache_key"]

log = structlog.get_logger("bus.middleware")

POLL_FIRST, POLL_MAX = 0.02, 0.25  # seconds between polls for another replica's result
CLAIMED = b"1"  # an empty value reads as deleted


def cache_key(agent: str, version: str, handler_name: str, input: Any) -> str:
    """The dedup key of a call: 40 hex digits, a valid KV key token."""
    data = codec.canonical([agent, version, handler_name, input])
    return hashlib.blake2b(data, digest_size=20).hexdigest()


class _Stored(msgspec.Struct, frozen=True, array_like=True):
    stored_at: float
    output: Any


class _Flight:
    __slots__ = ("done", "ok", "output")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.ok = False
        self.output: Any = None


class DedupCache:
    """A dedup cache with single flight, in this process and across replicas.

    Args:
        policy: TTL, local LRU size, how long to wait for another replica's result.
        agent, version: part of every key (a new version never sees old results).
        store: the ``bus_cache`` bucket (``None``: local cache only).
        clock: monotonic seconds (local expiry).
        wall: epoch seconds (stored with each KV value, so local copies expire with it).
        sleep: how to wait between polls.
    """

    __slots__ = (
        "_clock",
        "_flights",
        "_local",
        "_sleep",
        "_store",
        "_wall",
        "agent",
        "hits",
        "misses",
        "policy",
        "version",
        "waits",
    )

    def __init__(
        self,
        policy: CachePolicy,
        *,
        agent: str,
        version: str,
        store: Bucket | None,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        self.policy = policy
        self.agent = agent
        self.version = version
        self._store = store
        self._clock = clock
        self._wall = wall
        self._sleep = sleep
        self._local: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._flights: dict[str, _Flight] = {}
        self.hits = 0
        self.misses = 0
        self.waits = 0

    def snapshot(self) -> dict[str, Any]:
        """Counters for metrics: hits, misses, calls that waited for another's execution."""
        return {"hits": self.hits, "misses": self.misses, "waits": self.waits}

    async def __call__(self, ctx: CallContext, call_next: Next) -> Reply:
        key = cache_key(self.agent, self.version, ctx.handler.name, ctx.task.input)
        entry = self._local_get(key)
        if entry is not None:
            return self._hit(ctx, entry[1])
        flight = self._flights.get(key)
        if flight is not None:
            self.waits += 1
            await flight.done.wait()
            if flight.ok:
                return self._hit(ctx, flight.output)
            self.misses += 1  # the execution we waited for failed: try ourselves
            ctx.extra["cache"] = "miss"
            return await call_next(ctx)
        flight = self._flights[key] = _Flight()
        try:
            reply = await self._lead(ctx, call_next, key)
            flight.ok, flight.output = reply.ok, reply.output
            return reply
        finally:
            del self._flights[key]
            flight.done.set()

    async def _lead(self, ctx: CallContext, call_next: Next, key: str) -> Reply:
        if self._store is None:
            return await self._compute(ctx, call_next, key)
        found = await self._remote_get(key)
        if found is not None:
            return self._hit(ctx, found.output)
        if not await self._claim(key):
            self.waits += 1
            found = await self._await_other(key)
            if found is not None:
                return self._hit(ctx, found.output)
            return await self._compute(ctx, call_next, key)
        try:
            # The previous holder may have stored its result between our read and our claim.
            found = await self._remote_get(key)
            if found is not None:
                return self._hit(ctx, found.output)
            return await self._compute(ctx, call_next, key)
        finally:
            with anyio.CancelScope(shield=True):
                await self._unclaim(key)

    async def _compute(self, ctx: CallContext, call_next: Next, key: str) -> Reply:
        self.misses += 1
        ctx.extra["cache"] = "miss"
        reply = await call_next(ctx)
        if reply.ok:
            self._local_put(key, reply.output, self.policy.ttl)
            await self._remote_put(key, reply.output)
        return reply

    def _hit(self, ctx: CallContext, output: Any) -> Reply:
        self.hits += 1
        ctx.extra["cache"] = "hit"
        return ok_reply(ctx.task, output, cached=True)

    def _local_get(self, key: str) -> tuple[float, Any] | None:
        entry = self._local.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._local[key]
            return None
        self._local.move_to_end(key)
        return entry

    def _local_put(self, key: str, output: Any, ttl: float) -> None:
        self._local[key] = (self._clock() + ttl, output)
        self._local.move_to_end(key)
        while len(self._local) > self.policy.local_size:
            self._local.popitem(last=False)

    async def _remote_get(self, key: str) -> _Stored | None:
        assert self._store is not None
        try:
            entry = await self._store.get(f"{self.agent}.val.{key}")
            if entry is None:
                return None
            stored = codec.decode(entry.value, _Stored)
        except Exception:
            log.warning("cache_store_failed", op="get", exc_info=True)
            return None
        left = self.policy.ttl - (self._wall() - stored.stored_at)
        if left <= 0:
            return None
        self._local_put(key, stored.output, left)
        return stored

    async def _remote_put(self, key: str, output: Any) -> None:
        if self._store is None:
            return
        try:
            data = codec.encode(_Stored(self._wall(), output))
            await self._store.put(f"{self.agent}.val.{key}", data, ttl=kv_ttl(self.policy.ttl))
        except Exception:  # too large, or the KV is down: the reply is still good
            log.warning("cache_store_failed", op="put", exc_info=True)

    async def _claim(self, key: str) -> bool:
        assert self._store is not None
        try:
            await self._store.create(
                f"{self.agent}.claim.{key}", CLAIMED, ttl=kv_ttl(self.policy.wait)
            )
        except KeyExistsError:
            return False
        except Exception:
            log.warning("cache_store_failed", op="claim", exc_info=True)
        return True

    async def _unclaim(self, key: str) -> None:
        assert self._store is not None
        try:
            await self._store.delete(f"{self.agent}.claim.{key}")
        except Exception:
            log.warning("cache_store_failed", op="unclaim", exc_info=True)

    async def _await_other(self, key: str) -> _Stored | None:
        """Poll for the claimant's result until it lands, the claim goes, or ``wait`` ends."""
        assert self._store is not None
        give_up = self._clock() + self.policy.wait
        delay = POLL_FIRST
        while self._clock() < give_up:
            await self._sleep(min(delay, max(give_up - self._clock(), 0.0)))
            delay = min(delay * 1.5, POLL_MAX)
            found = await self._remote_get(key)
            if found is not None:
                return found
            try:
                if await self._store.get(f"{self.agent}.claim.{key}") is None:
                    return await self._remote_get(key)
            except Exception:
                log.warning("cache_store_failed", op="poll", exc_info=True)
        return None
