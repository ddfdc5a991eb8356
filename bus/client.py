"""Client calls: request an agent, publish an event, discover live agents.

What the CLI and other programs use to talk to a running bus; each opens its own connection.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import msgspec

from bus import codec
from bus.errors import NoAgentError
from bus.messages import Reply
from bus.observability.tracing import new_traceparent
from bus.settings import Settings
from bus.subjects import Subjects
from bus.transport.connection import connect
from bus.transport.discovery import gather
from bus.transport.jetstream import ensure_streams
from bus.transport.wire import Wire


@asynccontextmanager
async def connected(settings: Settings, name: str = "bus-cli") -> AsyncIterator[Wire]:
    """A ``Wire`` on a fresh connection, closed afterwards."""
    nc = await connect(settings, name=name)
    wire = Wire(nc)
    try:
        yield wire
    finally:
        await wire.close()


async def request_agent(
    settings: Settings,
    agent: str,
    data: Any,
    *,
    handler: str | None = None,
    timeout: float = 30.0,
) -> Reply:
    """Call ``agent`` directly (core request/reply) and return its ``Reply``.

    Raises:
        NoAgentError: no instance of ``agent`` is running.
        BusTimeoutError: no reply within ``timeout`` seconds.
    """
    subjects = Subjects(settings.prefix)
    subject = subjects.agent(agent) + (f".{handler}" if handler else "")
    headers = {
        "Content-Type": codec.JSON,
        "traceparent": new_traceparent(),
        "Bus-Timeout": f"{timeout:g}",
    }
    async with connected(settings) as wire:
        try:
            body, reply_headers = await wire.request(
                subject, codec.encode_json(data), headers=headers, timeout=timeout
            )
        except NoAgentError:
            raise NoAgentError(f"no agent named {agent!r} is running (see `bus agents`)") from None
    return codec.decode(body, Reply, codec.content_type(reply_headers))


async def publish_event(
    settings: Settings,
    event_type: str,
    data: Any,
    *,
    event_id: str,
    source: str = "bus",
    traceparent: str | None = None,
) -> bool:
    """Publish a CloudEvent (binary mode, JSON data) to ``bus.event.<type>``.

    Returns whether the stream already had an event with this id (deduplicated).
    """
    subjects = Subjects(settings.prefix)
    headers = {
        "Content-Type": codec.JSON,
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-type": event_type,
        "ce-source": source,
        "ce-time": datetime.now(UTC).isoformat(),
        "traceparent": traceparent or new_traceparent(),
    }
    async with connected(settings) as wire:
        await ensure_streams(wire.js, subjects, settings.replicas)
        return await wire.persist(
            subjects.event(event_type), codec.encode_json(data), msg_id=event_id, headers=headers
        )


class AgentSummary(msgspec.Struct, frozen=True):
    """One agent as ``bus agents`` lists it (instances summed over replicas)."""

    name: str
    version: str
    instances: int
    description: str = ""
    requests: int = 0
    errors: int = 0
    average_ms: float = 0.0
    breaker: str = ""
    endpoints: list[dict[str, Any]] = msgspec.field(default_factory=list)
    data: list[dict[str, Any]] = msgspec.field(default_factory=list)


async def discover_agents(settings: Settings, *, wait: float = 0.5) -> list[AgentSummary]:
    """Every live agent, from NATS micro ``$SRV.INFO`` and ``$SRV.STATS`` answers."""
    async with connected(settings) as wire:
        infos = [json.loads(b) for b in await gather(wire.nc, "$SRV.INFO", wait=wait)]
        stats = [json.loads(b) for b in await gather(wire.nc, "$SRV.STATS", wait=wait)]
    by_id = {s.get("id"): s for s in stats}
    grouped: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for info in infos:
        grouped.setdefault(info["name"], []).append((info, by_id.get(info.get("id"), {})))
    return [_summarize(name, members) for name, members in sorted(grouped.items())]


def _summarize(name: str, members: list[tuple[dict[str, Any], dict[str, Any]]]) -> AgentSummary:
    info = members[0][0]
    endpoint_stats = [e for _, s in members for e in s.get("endpoints", [])]
    data = [e.get("data") or {} for e in endpoint_stats]
    # The runtime's own counts cover direct, durable and event calls; micro's cover direct only.
    requests = sum(int(d.get("calls", 0)) for d in data)
    errors = sum(int(d.get("errors", 0)) for d in data)
    total_ms = sum(float(d.get("total_ms", 0.0)) for d in data)
    breakers = {d["breaker"].get("state", "") for d in data if isinstance(d.get("breaker"), dict)}
    return AgentSummary(
        name=name,
        version=(info.get("metadata") or {}).get("agent_version", info.get("version", "")),
        instances=len(members),
        description=info.get("description") or "",
        requests=requests,
        errors=errors,
        average_ms=round(total_ms / requests, 3) if requests else 0.0,
        breaker=",".join(sorted(b for b in breakers if b)),
        endpoints=info.get("endpoints", []),
        data=data,
    )
