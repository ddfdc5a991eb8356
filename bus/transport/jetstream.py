"""Create the bus's streams and KV buckets idempotently, with configurable replicas."""

from __future__ import annotations

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamInfo,
)

from bus.errors import ConfigError
from bus.subjects import Subjects
from bus.transport.kv import Bucket

DAY = 24 * 3600.0
REPLY_RECORD_TTL = DAY
"""How long a workflow reply stays in ``BUS_REPLIES`` as its task's idempotency record."""
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
        # Replies stay after the coordinator acks them: each is also the idempotency record
        # of its task (one subject per task, read back with a direct get on redelivery).
        StreamConfig(
            name=subjects.replies_stream,
            subjects=[f"{p}.reply.>"],
            retention=RetentionPolicy.LIMITS,
            max_age=REPLY_RECORD_TTL,
            discard=DiscardPolicy.OLD,
            allow_direct=True,
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


async def ensure_streams(
    js: JetStreamContext, subjects: Subjects, replicas: int = 1, *, manage: bool = False
) -> None:
    """Create every missing stream (safe to call from every process at start-up).

    Existing streams are left as they are: an agent with least-privilege credentials may read
    stream info but not create or change streams. Only with ``manage`` (the coordinator) is a
    stream in a form older than this version replaced, when it is empty; one process doing
    it keeps two from deleting each other's new stream.

    Raises:
        ConfigError: with ``manage``, an outdated stream that cannot be replaced.
    """
    for config in stream_configs(subjects, replicas):
        assert config.name is not None
        try:
            info = await js.stream_info(config.name)
        except nats.js.errors.NotFoundError:
            info = None
        if info is not None:
            if not manage or not _outdated(info.config, config):
                continue
            await _replace_empty(js, info, config)
        try:
            await js.add_stream(config)
        except nats.js.errors.BadRequestError:
            await js.update_stream(config)


def _outdated(found: StreamConfig, wanted: StreamConfig) -> bool:
    """A stream made by an older agent-bus in a form this one cannot use (``BUS_REPLIES``
    was a work-queue stream before replies became idempotency records)."""
    return found.retention != wanted.retention or bool(wanted.allow_direct) != bool(
        found.allow_direct
    )


async def _replace_empty(js: JetStreamContext, info: StreamInfo, wanted: StreamConfig) -> None:
    """Delete an outdated stream so it can be made anew, if that loses nothing.

    Raises:
        ConfigError: it still holds messages, or this connection may not delete it.
    """
    name = wanted.name
    held = info.state.messages
    fix = f"let the coordinators of the older version finish, then `nats stream rm {name}`"
    if held:
        raise ConfigError(f"stream {name} is in an older form and holds {held} messages: {fix}")
    try:
        await js.delete_stream(name or "")
    except nats.js.errors.NotFoundError:
        pass  # another process replaced it first
    except (nats.errors.Error, TimeoutError) as exc:
        raise ConfigError(
            f"stream {name} is in an older form and cannot be replaced ({exc}): {fix}"
        ) from None


async def ensure_bucket(nc: NATS, subjects: Subjects, name: str, replicas: int = 1) -> Bucket:
    """Open bucket ``<prefix>_<name>``, creating it when missing."""
    js = nc.jetstream()
    bucket = subjects.bucket(name)
    try:
        kv = await js.key_value(bucket)
    except nats.js.errors.BucketNotFoundError:
        kv = await js.create_key_value(bucket_config(subjects, name, replicas))
    return Bucket(nc, kv, bucket)


async def ensure_all(
    nc: NATS, subjects: Subjects, replicas: int = 1, *, manage: bool = False
) -> dict[str, Bucket]:
    """Every stream and every bucket; returns the buckets by short name."""
    js = nc.jetstream()
    await ensure_streams(js, subjects, replicas, manage=manage)
    return {name: await ensure_bucket(nc, subjects, name, replicas) for name in BUCKETS}
