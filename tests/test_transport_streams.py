"""The bus's streams as ``ensure_streams`` makes them, and the replacement of a replies
stream made by an older version (a work-queue stream, before replies became records)."""

from __future__ import annotations

import pytest
from nats.aio.client import Client as NATS
from nats.js.api import RetentionPolicy, StreamConfig

from bus.errors import ConfigError
from bus.subjects import Subjects
from bus.transport.jetstream import REPLY_RECORD_TTL, ensure_streams

S = Subjects()


async def old_replies_stream(nc: NATS) -> None:
    await nc.jetstream().add_stream(
        StreamConfig(
            name=S.replies_stream, subjects=["bus.reply.>"], retention=RetentionPolicy.WORK_QUEUE
        )
    )


async def test_replies_are_kept_as_records_after_they_are_consumed(nc: NATS) -> None:
    await ensure_streams(nc.jetstream(), S)
    js = nc.jetstream()
    subject = S.reply("alpha", "run-1", "run-1/0/1")
    await js.publish(subject, b"reply")
    sub = await js.pull_subscribe("bus.reply.>", durable="reader", stream=S.replies_stream)
    (msg,) = await sub.fetch(1, timeout=5)
    await msg.ack_sync()

    config = (await js.stream_info(S.replies_stream)).config
    assert (config.retention, config.max_age) == (RetentionPolicy.LIMITS, REPLY_RECORD_TTL)
    kept = await js.get_msg(S.replies_stream, subject=subject, direct=True)
    assert kept.data == b"reply"


async def test_the_coordinator_replaces_an_empty_replies_stream_of_an_older_version(
    nc: NATS,
) -> None:
    await old_replies_stream(nc)
    await ensure_streams(nc.jetstream(), S)  # an agent leaves it alone
    info = await nc.jetstream().stream_info(S.replies_stream)
    assert info.config.retention == RetentionPolicy.WORK_QUEUE

    await ensure_streams(nc.jetstream(), S, manage=True)
    info = await nc.jetstream().stream_info(S.replies_stream)
    assert (info.config.retention, info.config.allow_direct) == (RetentionPolicy.LIMITS, True)


async def test_an_older_replies_stream_with_replies_in_it_is_refused_not_lost(nc: NATS) -> None:
    await old_replies_stream(nc)
    await nc.jetstream().publish(S.reply("alpha", "run-1", "run-1/0/1"), b"pending")
    with pytest.raises(ConfigError, match=r"BUS_REPLIES .* holds 1 messages: .*nats stream rm"):
        await ensure_streams(nc.jetstream(), S, manage=True)
    info = await nc.jetstream().stream_info(S.replies_stream)
    assert info.state.messages == 1
