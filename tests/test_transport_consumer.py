"""Pull consumers: what a fetch loop delivers, and how soon."""

from __future__ import annotations

import asyncio
import random
import time

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import RetentionPolicy, StreamConfig

from bus.settings import Settings
from bus.transport.connection import connect
from bus.transport.consumer import ConsumerSpec, PullConsumer, _delivery_counts

WAIT = 0.2  # a short fetch wait, so idle fetches time out often
ROUNDS = 50


@pytest.mark.slow
async def test_a_message_published_after_idle_fetches_arrives_at_once(
    nc: NATS, settings: Settings
) -> None:
    # Each empty fetch ends in a race between nats-py's timer and the server's "408". Lost
    # the wrong way, it left a lingering pull behind that captured the next message, which
    # then arrived only when that pull expired, up to a whole fetch wait late
    # (nats-io/nats.py#986). Here a message follows idle spells of 0-3 fetch waits, 50 times.
    await nc.jetstream().add_stream(
        StreamConfig(name="IDLE", subjects=["idle.>"], retention=RetentionPolicy.WORK_QUEUE)
    )
    consumer = PullConsumer(nc, ConsumerSpec(stream="IDLE", durable="idle", subjects=("idle.>",)))
    await consumer.ensure()
    arrived: asyncio.Queue[float] = asyncio.Queue()

    async def fetch_forever() -> None:
        while True:
            for delivery in await consumer.fetch(64, WAIT):
                await delivery.ack()
                arrived.put_nowait(time.perf_counter())

    publisher = await connect(settings)
    idle = random.Random(7)
    late: list[float] = []
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(fetch_forever)
            for _ in range(ROUNDS):
                await anyio.sleep(idle.uniform(0, 3 * WAIT))  # the idle spell under test
                sent = time.perf_counter()
                await publisher.jetstream().publish("idle.x", b"x")
                with anyio.fail_after(5):
                    took = await arrived.get() - sent
                if took > WAIT / 4:
                    late.append(round(took, 3))
            tg.cancel_scope.cancel()
    finally:
        await publisher.close()
    assert late == []


@given(
    delivered=st.integers(1, 2**31),
    stream_seq=st.integers(1, 2**63),
    v2=st.booleans(),
)
def test_delivery_counts_agree_with_nats_py_metadata(
    delivered: int, stream_seq: int, v2: bool
) -> None:
    tail = f"{delivered}.{stream_seq}.7.1764160000000000000.3"
    subject = (
        f"$JS.ACK.hub.ACCHASH.BUS_TASKS.worker.{tail}.rnd"
        if v2
        else f"$JS.ACK.BUS_TASKS.worker.{tail}"
    )
    meta = Msg.Metadata._from_reply(subject)
    assert meta.sequence is not None
    assert _delivery_counts(subject) == (meta.num_delivered, meta.sequence.stream)
