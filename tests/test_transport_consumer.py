"""Pull consumers: what a fetch loop delivers, and how soon."""

from __future__ import annotations

import asyncio
import random
import time

import anyio
import anyio.lowlevel
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


async def _consumer(nc: NATS, name: str) -> PullConsumer:
    await nc.jetstream().add_stream(
        StreamConfig(
            name=name.upper(), subjects=[f"{name}.>"], retention=RetentionPolicy.WORK_QUEUE
        )
    )
    consumer = PullConsumer(
        nc, ConsumerSpec(stream=name.upper(), durable=name, subjects=(f"{name}.>",))
    )
    await consumer.ensure()
    return consumer


async def test_a_fetch_returns_what_is_there_without_waiting_for_a_full_batch(nc: NATS) -> None:
    consumer = await _consumer(nc, "some")
    js = nc.jetstream()
    for n in range(3):
        await js.publish(f"some.{n}", str(n).encode())
    with anyio.fail_after(2):  # the fetch may wait 30 s for a batch of 64
        first = await consumer.fetch(64, 30.0)
    assert [d.data for d in first] == [b"0", b"1", b"2"]
    assert [d.delivered for d in first] == [1, 1, 1]
    await js.publish("some.later", b"later")
    with anyio.fail_after(2):
        later = await consumer.fetch(64, 30.0)
    assert [d.data for d in later] == [b"later"]


async def test_a_fetch_hands_out_no_more_than_its_batch_and_keeps_the_rest(nc: NATS) -> None:
    consumer = await _consumer(nc, "few")
    js = nc.jetstream()
    for n in range(5):
        await js.publish(f"few.{n}", str(n).encode())
    got = [d.data for d in await consumer.fetch(2, 5.0)]
    assert got == [b"0", b"1"]
    while len(got) < 5:
        batch = await consumer.fetch(2, 5.0)
        assert 1 <= len(batch) <= 2
        got += [d.data for d in batch]
    assert got == [b"0", b"1", b"2", b"3", b"4"]


async def test_a_late_end_of_an_earlier_pull_does_not_end_the_open_one(nc: NATS) -> None:
    # The end of each pull ("404"/"408") comes on that pull's own reply subject. A status
    # for an earlier pull, arriving while the next one waits, must not cut that one short:
    # it would leave nats-py-style fetches returning empty while a message is on its way.
    consumer = await _consumer(nc, "late")
    first = await consumer.fetch(8, 0.1)  # pull 1 ends empty at its expiry
    assert first == []
    fetched: list[bytes] = []
    done = anyio.Event()

    async def fetch() -> None:
        fetched.extend(d.data for d in await consumer.fetch(8, 30.0))
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(fetch)
        await anyio.lowlevel.checkpoint()  # the fetch sends pull 2 and waits
        await nc.flush()  # pull 2 is with the server
        stale = f"{consumer._inbox}.1"
        await nc.publish(stale, b"", headers={"Status": "408", "Description": "Request Timeout"})
        await nc.flush()
        await nc.jetstream().publish("late.x", b"x")
        with anyio.fail_after(2):
            await done.wait()
    assert fetched == [b"x"]


async def test_fetching_resumes_after_the_consumer_is_deleted(nc: NATS) -> None:
    consumer = await _consumer(nc, "gone")
    js = nc.jetstream()
    await js.delete_consumer("GONE", "gone")
    await js.publish("gone.x", b"x")
    got: list[bytes] = []
    with anyio.fail_after(20):
        while not got:  # failed pulls count up to the stall limit, then it is recreated
            got = [d.data for d in await consumer.fetch(8, 0.2)]
    assert got == [b"x"]


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
