"""Idempotency records of durable tasks outside any run: their replies, in KV ``bus_cache``.

The durable runtime records such a task's reply before acking it; a redelivered task (the ack
was lost, or arrived after the redelivery) is then acked without running again. A workflow
task needs no record here: its reply, kept in ``BUS_REPLIES``, is its record.
"""

from __future__ import annotations

import math

import msgspec

from bus import codec
from bus.messages import Reply
from bus.transport.kv import Bucket, safe_key
from bus.transport.publisher import Outbound

DAY = 24 * 3600.0


def kv_ttl(seconds: float) -> float:
    """NATS per-message TTLs are whole seconds, at least one."""
    return float(max(1, math.ceil(seconds)))


class IdempotencyStore:
    """The recorded reply of each durable task id, so a redelivered task is not run again.

    Args:
        store: the ``bus_cache`` bucket.
        owner: the agent whose records these are; keys start with ``<owner>.`` so NATS
            permissions can keep each agent to its own.
        ttl: seconds a record lives (longer than any redelivery can arrive).
    """

    __slots__ = ("_store", "owner", "ttl")

    def __init__(self, store: Bucket, owner: str = "", ttl: float = DAY) -> None:
        self._store = store
        self.owner = owner
        self.ttl = ttl

    def key(self, task_id: str) -> str:
        """The KV key of a task id's record."""
        prefix = f"{self.owner}." if self.owner else ""
        return f"{prefix}task.{safe_key(task_id)}"

    async def get(self, task_id: str) -> Reply | None:
        """The reply recorded for ``task_id`` (marked ``cached``), or ``None``."""
        entry = await self._store.get(self.key(task_id))
        if entry is None:
            return None
        reply = codec.decode(entry.value, Reply)
        return msgspec.structs.replace(reply, cached=True)

    async def put(self, task_id: str, reply: Reply) -> None:
        """Record ``reply`` as the outcome of ``task_id``."""
        await self._store.put(self.key(task_id), codec.encode(reply), ttl=kv_ttl(self.ttl))

    def record(self, task_id: str, encoded_reply: bytes) -> Outbound:
        """The message ``put`` publishes (given the reply as ``codec.encode`` made it), for
        ``Wire.persist_all``."""
        return self._store.put_message(self.key(task_id), encoded_reply, ttl=kv_ttl(self.ttl))
