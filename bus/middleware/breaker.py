"""Circuit breaker middleware: local, or shared by all replicas through KV ``bus_breakers``.

Only ``transient`` and ``timeout`` outcomes count as failures; ``permanent``,
``invalid_input``, ``rate_limited`` and ``breaker_open`` say nothing about the dependency and
are not counted at all. An open breaker answers ``breaker_open`` at once without calling the
rest of the chain. The state after each call is left in ``ctx.extra["breaker_state"]``.

Shared mode keeps one ``BreakerRecord`` per key in KV. Each replica runs the state machine on a
local copy, queues its outcomes, and every ``refresh`` seconds (at once after a local
transition, and for every half-open probe) merges them into the KV record by compare-and-set,
adopting whatever the record says. So one replica opening the breaker stops the others within
``refresh`` seconds, and the half-open probes are counted across all replicas.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import structlog

from bus import codec
from bus.errors import InvalidInputError
from bus.messages import ErrorInfo, Reply, error_reply
from bus.middleware.breaker_core import (
    BreakerCore,
    BreakerRecord,
    State,
    outcome_code,
)
from bus.middleware.clock import Clock, Sleep
from bus.middleware.context import CallContext, Next
from bus.policies import BreakerPolicy
from bus.transport.kv import Bucket, KeyExistsError, RevisionMismatchError, safe_key

__all__ = ["BreakerCore", "BreakerRecord", "CircuitBreaker", "State"]

log = structlog.get_logger("bus.middleware")

COUNTED = frozenset({"transient", "timeout"})
CAS_TRIES = 8
RELEASE = -1  # a queued "give the permit back" instead of an outcome code


class CircuitBreaker:
    """A circuit breaker around the rest of the chain.

    Args:
        policy: window, thresholds, open duration, half-open probes, shared or not.
        key: names this breaker; in shared mode its KV key (made safe with ``safe_key``).
        store: the ``bus_breakers`` bucket; used only when ``policy.shared``.
        clock: monotonic seconds.
        wall: epoch seconds (the shared record stores wall-clock times).
        sleep: how ``wait_permitted`` waits.
        refresh: seconds between merges with the shared record.
    """

    __slots__ = (
        "_clock",
        "_core",
        "_last_sync",
        "_lock",
        "_pending",
        "_sleep",
        "_store",
        "_wall",
        "key",
        "policy",
        "refresh",
        "rejected",
    )

    def __init__(
        self,
        policy: BreakerPolicy,
        *,
        key: str,
        store: Bucket | None = None,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
        sleep: Sleep = anyio.sleep,
        refresh: float = 0.25,
    ) -> None:
        self.policy = policy
        self.key = safe_key(key)
        self._store = store if policy.shared else None
        self._clock = clock
        self._wall = wall
        self._sleep = sleep
        self.refresh = refresh
        self._core = BreakerCore(policy, clock)
        self._pending: list[tuple[int, int]] = []
        self._last_sync = float("-inf")
        self._lock = anyio.Lock()
        self.rejected = 0

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.key!r}, state={self.state!r})"

    @property
    def state(self) -> State:
        """``closed``, ``open`` or ``half_open`` (as last known, in shared mode)."""
        return self._core.state

    @property
    def shared(self) -> bool:
        return self._store is not None

    def snapshot(self) -> dict[str, Any]:
        """Counters for metrics and ``bus agents``."""
        calls, failures, slow = self._core.counts()
        return {
            "state": self.state,
            "calls": calls,
            "failures": failures,
            "slow": slow,
            "opens": self._core.opens,
            "rejected": self.rejected,
            "shared": self.shared,
        }

    async def wait_permitted(self) -> None:
        """Return once a call would be admitted (durable fetch loops pause here while open)."""
        while True:
            if self._store is not None and (self._due() or self._core.state == "half_open"):
                await self._sync()
            if self._core.permits_left() > 0:
                return
            delay = self._core.open_remaining() or self.refresh
            if self._store is not None:
                delay = min(delay, self.refresh)
            await self._sleep(max(delay, 0.001))

    async def __call__(self, ctx: CallContext, call_next: Next) -> Reply:
        generation = await self._acquire()
        if generation is None:
            self.rejected += 1
            ctx.extra["breaker_state"] = self._core.state
            wait = self._core.open_remaining()
            error = ErrorInfo(
                "breaker_open", "circuit breaker is open", "BreakerOpenError", wait or None
            )
            return error_reply(ctx.task, error)
        started = self._clock()
        reply: Reply | None = None
        try:
            reply = await call_next(ctx)
        finally:
            if reply is None:  # cancelled or raised: the outcome says nothing
                self._settle(generation, RELEASE)
        self._settle(generation, self._classify(reply, self._clock() - started))
        if self._store is not None:
            moved = self._core.generation != generation or self._core.state == "half_open"
            if moved or self._due():
                await self._sync(force=moved)
        ctx.extra["breaker_state"] = self._core.state
        return reply

    def _classify(self, reply: Reply, duration: float) -> int:
        threshold = self.policy.slow_call_duration
        slow = threshold is not None and duration >= threshold
        if reply.error is None:
            return outcome_code(False, slow)
        if reply.error.kind in COUNTED:
            return outcome_code(True, slow)
        return RELEASE

    def _settle(self, generation: int, code: int) -> None:
        _apply(self._core, generation, code)
        if self._store is not None:
            self._pending.append((generation, code))

    async def _acquire(self) -> int | None:
        if self._store is not None and (self._core.state == "half_open" or self._due()):
            return await self._sync(acquire=True)
        return self._core.try_acquire()

    def _due(self) -> bool:
        return self._clock() - self._last_sync >= self.refresh

    async def _sync(self, *, acquire: bool = False, force: bool = False) -> int | None:
        """Merge queued outcomes into the KV record by CAS and adopt it; maybe take a permit."""
        async with self._lock:
            if not (force or self._due()) and self._core.state == "closed":
                # Another call merged while this one waited for the lock.
                return self._core.try_acquire() if acquire else None
            self._last_sync = self._clock()
            try:
                for _ in range(CAS_TRIES):
                    done, granted = await self._merge(acquire)
                    if done:
                        return granted
            except Exception:
                log.warning("breaker_store_failed", key=self.key, exc_info=True)
        return self._core.try_acquire() if acquire else None

    async def _merge(self, acquire: bool) -> tuple[bool, int | None]:
        assert self._store is not None
        entry = await self._store.get(self.key)
        wall = self._wall()
        remote = BreakerCore(self.policy, self._clock)
        record = None if entry is None else _record(entry.value)
        if record is not None:
            remote.load(record, wall)
        flushed = len(self._pending)
        for generation, code in self._pending[:flushed]:
            _apply(remote, generation, code)
        before = remote.probes
        granted = remote.try_acquire() if acquire else None
        if flushed or remote.probes != before:
            data = codec.encode_json(remote.export(wall))
            try:
                if entry is None:
                    await self._store.create(self.key, data)
                else:
                    await self._store.update(self.key, data, entry.revision)
            except (KeyExistsError, RevisionMismatchError):
                return False, None
        # Outcomes queued while we awaited stay queued and are replayed on the adopted state.
        del self._pending[:flushed]
        for generation, code in self._pending:
            _apply(remote, generation, code)
        self._core = remote
        return True, granted


def _apply(core: BreakerCore, generation: int, code: int) -> None:
    if code == RELEASE:
        core.release(generation)
    else:
        core.record(generation, code)


def _record(data: bytes) -> BreakerRecord | None:
    try:
        return codec.decode(data, BreakerRecord, codec.JSON)
    except InvalidInputError:  # unreadable: start over closed
        return None
