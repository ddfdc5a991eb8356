"""Rate limit middleware: a token bucket, local or one budget shared by all replicas.

Waiting for a token is not a failure: calls queue (first come, first served) until the bucket
admits them. Only a task whose deadline passes while it waits is answered ``rate_limited``.
The seconds a call waited are left in ``ctx.extra["ratelimit_wait"]`` for metrics.

Shared mode keeps a ``LimitRecord`` per key in KV ``bus_limits``. A replica leases up to
``policy.lease`` tokens at a time by compare-and-set and spends them locally, so the KV is
written about ``rate / lease`` times per period in total, not once per call. Leased tokens are
spent, never returned: when a replica dies its unused lease (at most ``lease`` tokens) is lost,
and the global bound ``burst + rate * t / per`` (plus at most one lease per replica held at the
start of an interval) still holds.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import structlog

from bus import codec
from bus.errors import InvalidInputError
from bus.messages import ErrorInfo, Reply, error_reply
from bus.middleware.bucket import LimitRecord, TokenBucketCore, lease
from bus.middleware.clock import Clock, Sleep
from bus.middleware.context import CallContext, Next
from bus.policies import RateLimit
from bus.transport.kv import Bucket, KeyExistsError, RevisionMismatchError, safe_key

__all__ = ["LimitRecord", "RateLimiter", "TokenBucketCore"]

log = structlog.get_logger("bus.middleware")

STORE_RETRY = 0.5  # seconds to wait before using the KV again after it failed


class RateLimiter:
    """A token-bucket rate limiter; as middleware it takes one token per call.

    Args:
        policy: rate, period, burst, shared or not, lease size.
        key: names this limiter; in shared mode its KV key (made safe with ``safe_key``).
        store: the ``bus_limits`` bucket; used only when ``policy.shared``.
        clock: monotonic seconds.
        sleep: how to wait for tokens.
        wall: epoch seconds (the shared budget refills on wall-clock time).
    """

    __slots__ = (
        "_clock",
        "_lock",
        "_pool",
        "_sleep",
        "_store",
        "_wall",
        "bucket",
        "granted",
        "key",
        "leases",
        "policy",
        "waited_seconds",
    )

    def __init__(
        self,
        policy: RateLimit,
        *,
        key: str,
        store: Bucket | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = anyio.sleep,
        wall: Clock = time.time,
    ) -> None:
        self.policy = policy
        self.key = safe_key(key)
        self._store = store if policy.shared else None
        self._clock = clock
        self._sleep = sleep
        self._wall = wall
        self.bucket = TokenBucketCore(policy.rate, policy.per, policy.burst, clock)
        self._pool = 0  # shared mode: leased tokens not yet spent
        self._lock = anyio.Lock()
        self.waited_seconds = 0.0
        self.granted = 0
        self.leases = 0

    def __repr__(self) -> str:
        return f"RateLimiter({self.key!r}, rate={self.policy.rate}/{self.policy.per}s)"

    @property
    def shared(self) -> bool:
        return self._store is not None

    def snapshot(self) -> dict[str, Any]:
        """Counters for metrics: tokens granted, seconds spent waiting, KV leases taken."""
        return {
            "granted": self.granted,
            "waited_seconds": self.waited_seconds,
            "leases": self.leases,
            "shared": self.shared,
        }

    async def acquire(self, n: int = 1) -> None:
        """Wait until ``n`` tokens are granted (waiting is not failure)."""
        if not self._lock.locked() and self._take(n, whole=True):
            return
        started = self._clock()
        try:
            async with self._lock:
                remaining = n - self._take(n, whole=False)
                while remaining:
                    await self._refill(remaining, remaining)
                    remaining -= self._take(remaining, whole=False)
        finally:
            self.waited_seconds += self._clock() - started

    async def admit_up_to(self, n: int) -> int:
        """Wait for at least one token, take up to ``n``; durable fetch loops size fetches so."""
        if not self._lock.locked():
            taken = self._take(n, whole=False)
            if taken:
                return taken
        started = self._clock()
        try:
            async with self._lock:
                while not (taken := self._take(n, whole=False)):
                    await self._refill(1, n)
                return taken
        finally:
            self.waited_seconds += self._clock() - started

    def refund(self, n: int) -> None:
        """Give back tokens admitted but not used (a fetch returned fewer tasks)."""
        if n <= 0:
            return
        self.granted -= n
        if self._store is not None:
            self._pool += n
        else:
            self.bucket.give_back(n)

    async def __call__(self, ctx: CallContext, call_next: Next) -> Reply:
        if ctx.admitted or (not self._lock.locked() and self._take(1, whole=True)):
            return await call_next(ctx)
        waited = self.waited_seconds
        remaining = ctx.remaining()
        late = False
        if remaining is None:
            await self.acquire(1)
        else:
            # The token wait is bounded by the deadline; the handler's is the timeout's job.
            with anyio.move_on_after(remaining) as scope:
                await self.acquire(1)
            late = scope.cancelled_caught
        ctx.extra["ratelimit_wait"] = self.waited_seconds - waited
        if late:
            message = "no rate-limit token before the deadline"
            return error_reply(ctx.task, ErrorInfo("rate_limited", message, "RateLimitedError"))
        return await call_next(ctx)

    def _take(self, n: int, *, whole: bool) -> int:
        if self._store is not None:
            taken = min(n, self._pool)
            if whole and taken < n:
                taken = 0
            self._pool -= taken
        elif whole:
            taken = n if self.bucket.try_take(n) else 0
        else:
            taken = self.bucket.take_up_to(n)
        self.granted += taken
        return taken

    async def _refill(self, need: int, want: int) -> None:
        """Wait until ``need`` tokens may be there (shared: lease up to ``want`` from KV)."""
        if self._store is None:
            await self._sleep(self.bucket.wait_time(need))
            return
        wait = await self._lease(max(self.policy.lease, want))
        if wait > 0:
            await self._sleep(wait)

    async def _lease(self, want: int) -> float:
        assert self._store is not None
        try:
            while True:
                entry = await self._store.get(self.key)
                record = None if entry is None else _record(entry.value)
                new, taken, wait = lease(record, self._wall(), want, self.policy)
                if not taken:
                    return wait
                data = codec.encode_json(new)
                try:
                    if entry is None:
                        await self._store.create(self.key, data)
                    else:
                        await self._store.update(self.key, data, entry.revision)
                except (KeyExistsError, RevisionMismatchError):
                    continue
                self._pool += taken
                self.leases += 1
                return 0.0
        except Exception:
            log.warning("limiter_store_failed", key=self.key, exc_info=True)
            return STORE_RETRY


def _record(data: bytes) -> LimitRecord | None:
    try:
        return codec.decode(data, LimitRecord, codec.JSON)
    except InvalidInputError:  # unreadable: start over from a full bucket
        return None
