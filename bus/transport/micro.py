"""NATS micro services: ``$SRV.PING/INFO/STATS`` discovery for every agent."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import EndpointConfig, EndpointStats, Service, ServiceConfig


class EndpointDef(msgspec.Struct, frozen=True):
    """One micro endpoint: its subject, queue group, metadata and handler."""

    name: str
    subject: str
    queue_group: str
    metadata: dict[str, str]
    handler: Callable[[Msg], Awaitable[None]]


async def start_service(
    nc: NATS,
    *,
    name: str,
    version: str,
    description: str,
    metadata: dict[str, str],
    endpoints: list[EndpointDef],
    stats_data: Callable[[str], dict[str, Any]],
) -> Service:
    """Register a micro service whose STATS ``data`` per endpoint comes from ``stats_data``."""

    def on_stats(stats: EndpointStats) -> dict[str, Any]:
        return stats_data(stats.name)

    service = await add_service(
        nc,
        ServiceConfig(
            name=name,
            version=version,
            description=description or None,
            metadata=metadata,
            stats_handler=on_stats,
        ),
    )
    for endpoint in endpoints:

        def handle(request: Request, _handler: Any = endpoint.handler) -> Awaitable[None]:
            # A plain function handing over the message: one coroutine per request, not two.
            return _handler(request._msg)  # type: ignore[no-any-return]

        await service.add_endpoint(
            EndpointConfig(
                name=endpoint.name,
                subject=endpoint.subject,
                queue_group=endpoint.queue_group,
                metadata=endpoint.metadata,
                handler=handle,
            )
        )
    return service
