"""Who may do what on NATS: the permission set of each kind of bus service, as data.

Pure functions from names to ``Permissions`` (subjects a user may publish to and subscribe
to); ``bus.deploy.render`` turns them into nats-server config. Everything not listed is
refused by the server.

Roles:

- an agent ``<name>``: serves ``bus.agent.<name>`` (and ``bus.agent.<name>.<handler>``) in
  queue group ``<name>``; creates, reads and pulls only its own durable consumer ``<name>`` on
  ``bus.task.<name>`` (and its event consumers ``<name>-<handler>`` on the events stream);
  acks only those consumers' messages, in both ack-subject formats; publishes replies only on
  ``bus.reply.<name>.>`` (and reads back only those, as idempotency records) and dead
  letters only on ``bus.dlq.<name>``; reads and writes only
  its own keys (``<name>`` and ``<name>.*``) in ``bus_cache``, ``bus_breakers`` and
  ``bus_limits``; answers NATS micro discovery. It creates no stream or bucket.
- the coordinator: creates the streams and buckets, dispatches on ``bus.task.>``, consumes
  replies and events with its durable consumers, owns ``bus_runs`` and ``bus_topologies``,
  publishes ``bus.run.>`` and ``bus.cancel.>``, serves ``bus.control.>``.
- a client: publishes events, asks the coordinator to start or cancel runs, reads run state
  (and the registered topologies) and follows ``bus.run.>`` — nothing else.
- admin (``permissions=None``): everything inside the bus account, for operators.

Every service gets a private inbox prefix ``_INBOX.<service>`` (``inbox_prefix``): with the
shared ``_INBOX.>`` one user could read the replies, fetched tasks included, of another.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec

from bus.subjects import Subjects, check_agent_name

COORDINATOR = "coordinator"
CLIENT = "client"
ADMIN = "admin"
RESERVED = frozenset({COORDINATOR, CLIENT, ADMIN})

AGENT_BUCKETS = ("cache", "breakers", "limits")
COORDINATOR_BUCKETS = ("runs", "topologies")
ALL_BUCKETS = ("runs", "cache", "topologies", "breakers", "limits")


class Permissions(msgspec.Struct, frozen=True, kw_only=True):
    """What one NATS user may do.

    Attributes:
        publish: subjects (wildcards allowed) the user may publish to.
        subscribe: subjects it may subscribe to; ``"subject queue"`` allows only that queue.
        allow_responses: may answer requests it received, whatever their reply subject.
    """

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    allow_responses: bool = False


def inbox_prefix(service: str) -> str:
    """The private inbox prefix a service's connection must use (nats-py ``inbox_prefix``)."""
    return f"_INBOX.{service}"


def event_consumer(agent: str, handler: str) -> str:
    """Durable consumer name of one ``@agent.on_event`` handler on the events stream."""
    return f"{agent}-{handler}"


def agent_permissions(
    agent: str, subjects: Subjects | None = None, *, event_consumers: Sequence[str] = ()
) -> Permissions:
    """The permissions of agent ``agent`` (see the module docstring)."""
    s = subjects or Subjects()
    check_agent_name(agent)
    tasks = s.tasks_stream
    publish = [
        f"{s.prefix}.reply.{agent}.>",
        s.dlq(agent),
        "$JS.API.INFO",
        "$JS.API.STREAM.NAMES",
        # Start-up opens every stream and bucket (creating none): info only.
        *_stream_info([tasks, s.replies_stream, s.events_stream, s.dlq_stream]),
        *_stream_info(_kv_stream(s.bucket(name)) for name in ALL_BUCKETS),
        # Only the create subject that names the filter: the server checks that the filter in
        # the request matches it, so no other agent's tasks can be selected.
        f"$JS.API.CONSUMER.CREATE.{tasks}.{agent}.{s.task(agent)}",
        # Its own replies, read back as idempotency records when a task is redelivered.
        f"$JS.API.DIRECT.GET.{s.replies_stream}.{s.prefix}.reply.{agent}.>",
        f"$JS.API.CONSUMER.INFO.{tasks}.{agent}",
        f"$JS.API.CONSUMER.MSG.NEXT.{tasks}.{agent}",
        *_acks(tasks, agent),
    ]
    for consumer in event_consumers:
        check_agent_name(consumer)
        publish += [
            f"$JS.API.CONSUMER.CREATE.{s.events_stream}.{consumer}",
            f"$JS.API.CONSUMER.CREATE.{s.events_stream}.{consumer}.>",
            f"$JS.API.CONSUMER.DURABLE.CREATE.{s.events_stream}.{consumer}",
            f"$JS.API.CONSUMER.INFO.{s.events_stream}.{consumer}",
            f"$JS.API.CONSUMER.MSG.NEXT.{s.events_stream}.{consumer}",
            *_acks(s.events_stream, consumer),
        ]
    for name in AGENT_BUCKETS:
        publish += _kv_own_keys(s.bucket(name), agent)
    subscribe = [
        f"{s.agent(agent)} {agent}",
        f"{s.agent(agent)}.* {agent}",
        f"{s.prefix}.cancel.>",
        f"{inbox_prefix(agent)}.>",
        "$SRV.PING",
        "$SRV.INFO",
        "$SRV.STATS",
        f"$SRV.*.{agent}",
        f"$SRV.*.{agent}.*",
        f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{tasks}.{agent}",
    ]
    return Permissions(publish=_unique(publish), subscribe=_unique(subscribe), allow_responses=True)


def coordinator_permissions(subjects: Subjects | None = None) -> Permissions:
    """The permissions shared by every coordinator replica."""
    s = subjects or Subjects()
    streams = [s.tasks_stream, s.replies_stream, s.events_stream, s.dlq_stream]
    kv_streams = [_kv_stream(s.bucket(name)) for name in ALL_BUCKETS]
    publish = [
        f"{s.prefix}.task.>",
        f"{s.prefix}.run.>",
        f"{s.prefix}.cancel.>",
        "$JS.API.INFO",
        "$JS.API.STREAM.NAMES",
    ]
    for stream in streams + kv_streams:
        publish += [
            f"$JS.API.STREAM.CREATE.{stream}",
            f"$JS.API.STREAM.UPDATE.{stream}",
            f"$JS.API.STREAM.INFO.{stream}",
        ]
    for stream, consumer in (
        (s.replies_stream, s.coordinator_consumer),
        (s.events_stream, s.events_consumer),
    ):
        publish += [
            f"$JS.API.CONSUMER.CREATE.{stream}.{consumer}",
            f"$JS.API.CONSUMER.CREATE.{stream}.{consumer}.>",
            f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{consumer}",
            f"$JS.API.CONSUMER.INFO.{stream}.{consumer}",
            f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}",
            *_acks(stream, consumer),
        ]
    for name in COORDINATOR_BUCKETS:
        publish += [f"$KV.{s.bucket(name)}.>", *_kv_read(s.bucket(name), listing=True)]
    subscribe = [
        f"{s.prefix}.control.>",
        f"{inbox_prefix(COORDINATOR)}.>",
        f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{s.tasks_stream}.*",
    ]
    return Permissions(publish=_unique(publish), subscribe=_unique(subscribe), allow_responses=True)


def client_permissions(subjects: Subjects | None = None) -> Permissions:
    """Publish events, start and cancel runs, read and follow run state — nothing else."""
    s = subjects or Subjects()
    publish = [
        f"{s.prefix}.event.>",
        s.control("start"),
        s.control("cancel"),
        "$JS.API.INFO",
        *_stream_info([s.tasks_stream, s.replies_stream, s.events_stream, s.dlq_stream]),
        # Run records, and the registered topologies a run is started by name from.
        *_kv_read(s.bucket("runs"), listing=True),
        *_kv_read(s.bucket("topologies"), listing=True),
    ]
    subscribe = [f"{s.prefix}.run.>", f"{inbox_prefix(CLIENT)}.>"]
    return Permissions(publish=_unique(publish), subscribe=_unique(subscribe))


def _acks(stream: str, consumer: str) -> list[str]:
    # v1: $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
    # v2 (nats-server 2.14+, feature flag js_ack_fc_v2, default later):
    #     $JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>...
    return [f"$JS.ACK.{stream}.{consumer}.>", f"$JS.ACK.*.*.{stream}.{consumer}.>"]


def _kv_stream(bucket: str) -> str:
    return f"KV_{bucket}"


def _stream_info(streams: Iterable[str]) -> list[str]:
    return [f"$JS.API.STREAM.INFO.{stream}" for stream in streams]


def _kv_own_keys(bucket: str, owner: str) -> list[str]:
    stream = _kv_stream(bucket)
    keys = [f"$KV.{bucket}.{owner}", f"$KV.{bucket}.{owner}.>"]
    # Direct gets name the key in the subject, so reads can be pinned to the owner's keys;
    # STREAM.MSG.GET names it in the body and would open the whole bucket.
    return [
        f"$JS.API.STREAM.INFO.{stream}",
        *keys,
        *(f"$JS.API.DIRECT.GET.{stream}.{key}" for key in keys),
    ]


def _kv_read(bucket: str, *, listing: bool) -> list[str]:
    stream = _kv_stream(bucket)
    subjects = [
        f"$JS.API.STREAM.INFO.{stream}",
        f"$JS.API.STREAM.MSG.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}.>",
    ]
    if listing:
        # keys() and watch() read through an ordered (ephemeral, flow-controlled) consumer.
        subjects += [
            f"$JS.API.CONSUMER.CREATE.{stream}",
            f"$JS.API.CONSUMER.CREATE.{stream}.>",
            f"$JS.API.CONSUMER.INFO.{stream}.>",
            f"$JS.FC.{stream}.>",
            f"$JS.FC.*.*.{stream}.>",
        ]
    return subjects


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
