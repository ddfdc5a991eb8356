"""Run records in KV ``bus_runs``, changed only by compare-and-set on the revision.

Any number of coordinator replicas write the same records without a leader: a write that
lost a race re-reads the record and re-applies the change to what it finds. The revision a
write returned is trusted for the next write (NATS-NOTES: no read-your-writes on replicas),
so the hot path costs one KV round trip per change.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

import anyio
import msgspec
import structlog

from bus import codec
from bus.errors import InvalidInputError, InvalidTransitionError, TransientError
from bus.transport.kv import Bucket, KeyExistsError, RevisionMismatchError
from bus.transport.scan import kv_values
from bus.transport.wire import Wire
from bus.workflow.records import RunRecord
from bus.workflow.states import RUN_TERMINAL

log = structlog.get_logger("bus.coordinator")

R = TypeVar("R")

MAX_RACES = 64
CACHE_SIZE = 20_000

__all__ = ["Changed", "KeyExistsError", "RunStore", "Stored"]


class _Head(msgspec.Struct):
    state: str = ""


class Stored(msgspec.Struct, frozen=True):
    """A run record and the KV revision it was read or written at."""

    record: RunRecord
    revision: int


class Changed(msgspec.Struct, Generic[R], frozen=True):
    """The outcome of ``RunStore.change``: the record before and after, and what the change
    function returned beside the new record."""

    before: RunRecord
    after: Stored
    result: R


class RunStore:
    """Read, create and change run records.

    Args:
        bucket: KV bucket ``bus_runs``.
        wire: the connection, for scanning the whole bucket.
        cache_size: how many open runs keep their last known revision in memory.
        retention: seconds a finished run is kept (a per-key TTL set by the write that
            finishes it); ``None`` keeps it forever.
    """

    __slots__ = ("_bucket", "_cache", "_cache_size", "_retention", "_wire")

    def __init__(
        self,
        bucket: Bucket,
        wire: Wire,
        *,
        cache_size: int = CACHE_SIZE,
        retention: float | None = None,
    ) -> None:
        self._bucket = bucket
        self._wire = wire
        self._cache: OrderedDict[str, Stored] = OrderedDict()
        self._cache_size = cache_size
        self._retention = retention

    async def create(self, record: RunRecord) -> Stored:
        """Store a new run. Raises ``KeyExistsError`` when the run id is taken."""
        revision = await self._bucket.create(record.run_id, codec.encode(record))
        stored = Stored(record, revision)
        self._remember(stored)
        return stored

    async def get(self, run_id: str) -> Stored | None:
        """The run as stored now (``None`` when unknown)."""
        entry = await self._bucket.get(run_id)
        if entry is None:
            return None
        return Stored(codec.decode(entry.value, RunRecord), entry.revision)

    async def peek(self, run_id: str) -> Stored | None:
        """The run as last seen by this process, else as stored now (then remembered).

        Good for what never changes in a run (its topology); ``change`` re-reads as needed.
        """
        cached = self._cache.get(run_id)
        if cached is not None:
            return cached
        stored = await self.get(run_id)
        if stored is not None:
            self._remember(stored)
        return stored

    async def change(
        self, run_id: str, change: Callable[[RunRecord], tuple[RunRecord, R]]
    ) -> Changed[R] | None:
        """Apply ``change`` to the run and write the result by compare-and-set.

        ``change`` is pure and may run several times: once per lost race, each time on the
        freshly read record. Returning an equal record means "nothing to write".
        Exceptions it raises (``InvalidTransitionError``) propagate and nothing is written.

        Returns:
            The outcome, or ``None`` when the run does not exist.

        Raises:
            TransientError: the record kept changing under us ``MAX_RACES`` times.
        """
        # A cached record is trusted only as the base of a compare-and-set: whenever it
        # would lead to no write or to a rejection, the verdict is taken again on a fresh read.
        current = self._cache.get(run_id)
        fresh = current is None
        if current is None:
            current = await self.get(run_id)
        for race in range(MAX_RACES):
            if current is None:
                return None
            try:
                new, result = change(current.record)
            except InvalidTransitionError:
                if fresh:
                    raise
                current, fresh = await self.get(run_id), True
                continue
            if new is current.record or new == current.record:
                if not fresh:
                    current, fresh = await self.get(run_id), True
                    continue
                return Changed(current.record, current, result)
            try:
                ttl = self._retention if new.terminal else None
                revision = await self._bucket.update(
                    run_id, codec.encode(new), current.revision, ttl=ttl
                )
            except RevisionMismatchError:
                self._cache.pop(run_id, None)
                # Jittered backoff, so racers stop colliding in lockstep.
                await anyio.sleep(random.uniform(0, min(0.05, 0.0005 * 2**race)))
                current, fresh = await self.get(run_id), True
                continue
            stored = Stored(new, revision)
            self._remember(stored)
            return Changed(current.record, stored, result)
        raise TransientError(f"run {run_id} kept changing under us; try again")

    async def scan(self, *, open_only: bool = False) -> AsyncIterator[Stored]:
        """Every run record in the bucket (unreadable ones are logged and skipped).

        With ``open_only``, finished runs are skipped after decoding only their state, so a
        bucket full of history costs little to scan.
        """
        async for key, value, revision in kv_values(self._wire, self._bucket.name):
            try:
                if open_only and codec.decode(value, _Head).state in RUN_TERMINAL:
                    continue
                yield Stored(codec.decode(value, RunRecord), revision)
            except InvalidInputError as exc:
                log.warning("unreadable run record skipped", run_id=key, error=str(exc))

    def forget(self, run_id: str) -> None:
        """Drop the cached revision of a run (the next change re-reads it)."""
        self._cache.pop(run_id, None)

    def _remember(self, stored: Stored) -> None:
        run_id = stored.record.run_id
        if stored.record.state in RUN_TERMINAL:
            self._cache.pop(run_id, None)
            return
        self._cache[run_id] = stored
        self._cache.move_to_end(run_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
