"""Create the bus's streams and KV buckets idempotently, with configurable replicas."""

from __future__ import annotations

import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from bus.subjects import Subjects
from bus.transport.kv import Bucket

DAY = 24 * 3600.0
BUCKETS = ("runs", "cache", "topologies", "breakers", "limits")
MAX_PAYLOAD = 1024 * 1024


def stream_configs(subjects: Subjects, replicas: int = 1) -> list[StreamConfig]:
    """The four streams of DESIGN.md."""
    p = subjects.prefix
    common = {"storage": StorageType.FILE, "num_replicas": replicas, "duplicate_window": 120.0}
    return [
        StreamConfig(
            name=subjects.tasks_stream,
            subjects=[f"{p}.task.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            **common,  # type: ignore[arg-type]
        ),
        StreamConfig(
            name=subjects.replies_stream,
            subjects=[f"{p}.reply.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            **common,  # type: ignore[arg-type]
        ),
        StreamConfig(
            name=subjects.events_stream,
            subjects=[f"{p}.event.>"],
            retention=RetentionPolicy.LIMITS,
            max_age=7 * DAY,
            discard=DiscardPolicy.OLD,
            **common,  # type: ignore[arg-type]
        ),
        StreamConfig(
            name=subjects.dlq_stream,
            subjects=[f"{p}.dlq.>"],
            retention=RetentionPolicy.LIMITS,
            max_age=30 * DAY,
            discard=DiscardPolicy.OLD,
            **common,  # type: ignore[arg-type]
        ),
    ]


def bucket_config(subjects: Subjects, name: str, replicas: int = 1) -> KeyValueConfig:
    history = {"runs": 1, "topologies": 16}.get(name, 1)
    return KeyValueConfig(
        bucket=subjects.bucket(name),
        history=history,
        replicas=replicas,
        storage=StorageType.FILE,
        max_value_size=MAX_PAYLOAD,
        # Direct gets: reads are served by any replica, and NATS permissions can pin them to
        # a key prefix ($JS.API.DIRECT.GET.KV_<bucket>.$KV.<bucket>.<agent>.>), which is how an
        # agent is kept to its own cache, breaker and limiter keys.
        direct=True,
    )


async def ensure_streams(js: JetStreamContext, subjects: Subjects, replicas: int = 1) -> None:
    """Create every missing stream (safe to call from every process at start-up).

    Existing streams are left as they are: an agent with least-privilege credentials may read
    stream info but not create or change streams (the coordinator or an operator does).
    """
    for config in stream_configs(subjects, replicas):
        assert config.name is not None
        try:
            await js.stream_info(config.name)
            continue
        except nats.js.errors.NotFoundError:
            pass
        try:
            await js.add_stream(config)
        except nats.js.errors.BadRequestError:
            await js.update_stream(config)


async def ensure_bucket(
    js: JetStreamContext, subjects: Subjects, name: str, replicas: int = 1
) -> Bucket:
    """Open bucket ``<prefix>_<name>``, creating it when missing."""
    bucket = subjects.bucket(name)
    try:
        kv = await js.key_value(bucket)
    except nats.js.errors.BucketNotFoundError:
        kv = await js.create_key_value(bucket_config(subjects, name, replicas))
    return Bucket(js, kv, bucket)


async def ensure_all(nc: NATS, subjects: Subjects, replicas: int = 1) -> dict[str, Bucket]:
    """Every stream and every bucket; returns the buckets by short name."""
    js = nc.jetstream()
    await ensure_streams(js, subjects, replicas)
    return {name: await ensure_bucket(js, subjects, name, replicas) for name in BUCKETS}
