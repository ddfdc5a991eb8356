"""Publishing several messages into streams at once (``Wire.persist_all``)."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client as NATS

from bus.errors import TransientError
from bus.subjects import Subjects
from bus.transport.jetstream import ensure_all
from bus.transport.wire import Outbound, Wire


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
    await asyncio.sleep(0)  # the cancelled acks' done callbacks run on the next loop turn
    assert not wire.js._publish_async_futures  # nats-py's slots for pending acks given back


async def test_nothing_to_store_returns_at_once(nc: NATS) -> None:
    await Wire(nc).persist_all([])
