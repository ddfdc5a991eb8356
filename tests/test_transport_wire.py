"""Publishing into streams and reading their acks (``Wire.persist_all``, ``StreamPublisher``)."""

from __future__ import annotations

import asyncio

import anyio
import pytest
from nats.aio.client import Client as NATS

from bus.errors import TransientError
from bus.subjects import Subjects
from bus.transport.jetstream import ensure_all
from bus.transport.kv import RevisionMismatchError
from bus.transport.publisher import (
    AckTimeoutError,
    Outbound,
    StreamRejectedError,
    stream_publisher,
)
from bus.transport.wire import Wire


async def test_every_message_is_stored_once_even_when_sent_twice(nc: NATS) -> None:
    buckets = await ensure_all(nc, Subjects())
    wire = Wire(nc)
    reply = Outbound("bus.reply.a.r1", b"reply", {"Nats-Msg-Id": "reply.r1/0/1"})
    record = buckets["cache"].put_message("a.task.r1", b"record", ttl=3600)
    await wire.persist_all([reply, record])
    await wire.persist_all([reply, record])  # a retry after a lost ack
    info = await nc.jetstream().stream_info("BUS_REPLIES")
    assert info.state.messages == 1  # deduplicated by its Nats-Msg-Id
    entry = await buckets["cache"].get("a.task.r1")
    assert entry is not None
    assert entry.value == b"record"
    stored = await nc.jetstream().get_last_msg("KV_bus_cache", "$KV.bus_cache.a.task.r1")
    assert stored.headers is not None
    assert stored.headers["Nats-TTL"] == "3600"


async def test_a_message_no_stream_takes_is_a_transient_error(nc: NATS) -> None:
    await ensure_all(nc, Subjects())
    wire = Wire(nc)
    stored = Outbound("bus.reply.a.r2", b"kept")
    lost = Outbound("nowhere.at.all", b"lost")
    with pytest.raises(TransientError, match=r"nowhere\.at\.all"):
        await wire.persist_all([stored, lost], timeout=5)
    assert not stream_publisher(nc)._waiting  # nothing left waiting for an ack


async def test_acks_come_back_to_their_own_publishes(nc: NATS) -> None:
    await ensure_all(nc, Subjects())
    publisher = stream_publisher(nc)
    messages = [Outbound(f"bus.reply.a.r{n}.t", b"x", {"Nats-Msg-Id": f"m{n}"}) for n in range(20)]
    first, again = await asyncio.gather(
        publisher.persist(messages), publisher.persist(messages[::-1])
    )
    assert [ack.seq for ack in first] == list(range(1, 21))
    assert [ack.seq for ack in again] == list(range(20, 0, -1))  # the same messages
    assert not any(ack.duplicate for ack in first)
    assert all(ack.duplicate for ack in again)
    assert {ack.stream for ack in first} == {"BUS_REPLIES"}


async def test_a_refused_publish_is_reported_at_once_with_the_servers_code(nc: NATS) -> None:
    # nats-py's publish_async never settles a publish the stream refused (nats.py#985): a
    # lost compare-and-set would surface as a timeout after seconds, not as a lost race.
    buckets = await ensure_all(nc, Subjects())
    bucket = buckets["runs"]
    revision = await bucket.put("run1", b"v1")
    stale = Outbound(
        "$KV.bus_runs.run1", b"v2", {"Nats-Expected-Last-Subject-Sequence": str(revision - 1)}
    )
    with anyio.fail_after(1):
        with pytest.raises(StreamRejectedError) as refused:
            await stream_publisher(nc).persist([stale], timeout=30)
        with pytest.raises(RevisionMismatchError):
            await bucket.update("run1", b"v2", revision - 1)
    assert refused.value.err_code == 10071
    assert await bucket.update("run1", b"v2", revision) > revision


async def test_an_ack_that_never_comes_is_a_timeout(nc: NATS) -> None:
    silent = await nc.subscribe("silent.x")  # takes the message and never acks it
    publisher = stream_publisher(nc)
    with pytest.raises(AckTimeoutError):
        await publisher.persist([Outbound("silent.x", b"x")], timeout=0.2)
    assert not publisher._waiting
    await silent.unsubscribe()


async def test_nothing_to_store_returns_at_once(nc: NATS) -> None:
    await Wire(nc).persist_all([])
