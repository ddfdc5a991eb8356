"""NATS micro services: ``$SRV.PING/INFO/STATS`` discovery for every agent.

nats-py's ``Service`` answers the three verbs; the endpoints are plain subscriptions of ours.
nats-py's own endpoint wraps every request in a ``Request``, times the callback and updates
its averages: 0.55 µs a request, about 5% of a direct call, and for an agent the callback is
only the hand-off to the work pool, so the time it measured meant nothing. Here an endpoint
hands the message straight to its handler, and STATS reports the handler's own numbers (the
``data`` its ``stats_data`` returns): every call in every mode, timed through the whole chain.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.micro.service import (
    EndpointInfo,
    EndpointStats,
    Service,
    ServiceConfig,
    ServiceInfo,
    ServiceStats,
)


class EndpointDef(msgspec.Struct, frozen=True):
    """One micro endpoint: its subject, queue group, metadata and handler (a coroutine
    function, which nats-py requires of a subscription callback)."""

    name: str
    subject: str
    queue_group: str
    metadata: dict[str, str]
    handler: Callable[[Msg], Awaitable[None]]


StatsData = Callable[[str], dict[str, Any]]


class AgentMicroService(Service):
    """A micro service whose endpoints are served by our own subscriptions.

    INFO lists ``endpoints``; STATS reports, per endpoint, ``stats_data(name)`` as ``data``
    and its ``calls``, ``errors`` and ``total_ms`` as micro's ``num_requests``,
    ``num_errors`` and ``processing_time``.
    """

    def __init__(
        self,
        nc: NATS,
        config: ServiceConfig,
        endpoints: list[EndpointDef],
        stats_data: StatsData,
    ) -> None:
        super().__init__(nc, config)
        self._endpoint_defs = endpoints
        self._stats_data = stats_data
        self._endpoint_subs: list[Subscription] = []

    async def serve_endpoints(self) -> None:
        """Subscribe every endpoint (after ``start``, like nats-py's ``add_endpoint``)."""
        for endpoint in self._endpoint_defs:
            sub = await self._client.subscribe(
                endpoint.subject, queue=endpoint.queue_group, cb=endpoint.handler
            )
            self._endpoint_subs.append(sub)

    def info(self) -> ServiceInfo:
        return ServiceInfo(
            id=self.id,
            name=self._name,
            version=self._version,
            description=self._description,
            metadata=self._metadata,
            endpoints=[
                EndpointInfo(
                    name=e.name, subject=e.subject, queue_group=e.queue_group, metadata=e.metadata
                )
                for e in self._endpoint_defs
            ],
        )

    def stats(self) -> ServiceStats:
        endpoints = []
        for e in self._endpoint_defs:
            data = self._stats_data(e.name)
            calls = int(data.get("calls", 0))
            nanos = int(float(data.get("total_ms", 0.0)) * 1e6)
            endpoints.append(
                EndpointStats(
                    name=e.name,
                    subject=e.subject,
                    queue_group=e.queue_group,
                    num_requests=calls,
                    num_errors=int(data.get("errors", 0)),
                    processing_time=nanos,
                    average_processing_time=nanos // calls if calls else 0,
                    data=data,
                )
            )
        return ServiceStats(
            id=self.id,
            name=self._name,
            version=self._version,
            metadata=self._metadata,
            endpoints=endpoints,
            started=self._started,
        )

    async def stop(self) -> None:
        subs, self._endpoint_subs = self._endpoint_subs, []
        for sub in subs:
            await sub.unsubscribe()
        await super().stop()


async def start_service(
    nc: NATS,
    *,
    name: str,
    version: str,
    description: str,
    metadata: dict[str, str],
    endpoints: list[EndpointDef],
    stats_data: StatsData,
) -> AgentMicroService:
    """Register a micro service whose STATS per endpoint come from ``stats_data``."""
    config = ServiceConfig(
        name=name, version=version, description=description or None, metadata=metadata
    )
    service = AgentMicroService(nc, config, endpoints, stats_data)
    await service.start()
    await service.serve_endpoints()
    return service
