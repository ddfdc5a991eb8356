"""Registered topologies in KV ``bus_topologies``, by name and by version.

Two keys per topology: ``latest.<name>`` holds the newest definition (``bus run NAME`` and
event triggers use it) and ``v.<name>.<version>`` every version ever registered (never
rewritten), so a run keeps the version it started with while a newer one is registered.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import structlog

from bus.errors import ConfigError, TopologyError
from bus.transport.kv import Bucket, KeyExistsError, safe_key
from bus.transport.scan import kv_updates, kv_values
from bus.transport.wire import Wire
from bus.workflow.loader import decode_topology, encode_topology
from bus.workflow.topology import Topology

log = structlog.get_logger("bus.coordinator")

LATEST = "latest."
VERSION = "v."


class UnknownTopologyError(ConfigError, LookupError):
    """No topology of that name (or version) is registered."""


def _latest_key(name: str) -> str:
    return LATEST + safe_key(name)


def _version_key(name: str, version: str) -> str:
    return f"{VERSION}{safe_key(name)}.{safe_key(version)}"


class TopologyRegistry:
    """Registers topologies and finds them by name, version or trigger.

    Versions are immutable, so every version read is cached for good; the latest definition
    of each name is kept current by ``follow``.
    """

    __slots__ = ("_bucket", "_latest", "_versions", "_wire")

    def __init__(self, bucket: Bucket, wire: Wire) -> None:
        self._bucket = bucket
        self._wire = wire
        self._versions: dict[tuple[str, str], Topology] = {}
        self._latest: dict[str, Topology] = {}

    async def register(self, topology: Topology) -> bool:
        """Store ``topology`` as its name's latest version; ``True`` if that changed anything."""
        data = encode_topology(topology)
        with contextlib.suppress(KeyExistsError):
            await self._bucket.create(_version_key(topology.name, topology.version), data)
        self._versions[topology.name, topology.version] = topology
        current = await self._bucket.get(_latest_key(topology.name))
        if current is not None and current.value == data:
            self._latest[topology.name] = topology
            return False
        await self._bucket.put(_latest_key(topology.name), data)
        self._latest[topology.name] = topology
        log.info("topology registered", topology=topology.name, version=topology.version)
        return True

    async def register_all(self, topologies: Iterable[Topology]) -> None:
        for topology in topologies:
            await self.register(topology)

    async def get(self, name: str, version: str = "") -> Topology:
        """The topology ``name`` at ``version`` (the latest one when ``version`` is empty).

        Raises:
            UnknownTopologyError: nothing is registered under that name or version.
        """
        if version:
            found = self._versions.get((name, version))
            if found is not None:
                return found
            entry = await self._bucket.get(_version_key(name, version))
        else:
            entry = await self._bucket.get(_latest_key(name))
        if entry is None:
            what = f"{name!r} version {version}" if version else repr(name)
            raise UnknownTopologyError(f"no topology {what} is registered")
        topology = decode_topology(entry.value)
        self._versions[topology.name, topology.version] = topology
        if not version:
            self._latest[name] = topology
        return topology

    async def load(self) -> list[Topology]:
        """Read the latest version of every registered topology (and remember them)."""
        async for key, value, _ in kv_values(self._wire, self._bucket.name):
            self._accept(key, value)
        return sorted(self._latest.values(), key=lambda t: t.name)

    async def follow(self) -> None:
        """Keep the latest versions current from the bucket's live updates (runs forever)."""
        async for key, value, _ in kv_updates(self._wire, self._bucket.name):
            if value is None:
                if key.startswith(LATEST):
                    self._latest = {n: t for n, t in self._latest.items() if _latest_key(n) != key}
                continue
            self._accept(key, value)

    def _accept(self, key: str, value: bytes) -> None:
        if not key.startswith(LATEST):
            return
        try:
            topology = decode_topology(value)
        except TopologyError as exc:
            log.warning("unreadable topology skipped", key=key, error=str(exc))
            return
        self._latest[topology.name] = topology
        self._versions[topology.name, topology.version] = topology

    def triggered_by(self, event_type: str) -> list[Topology]:
        """The latest topologies whose triggers match ``event_type``, by name."""
        found = [t for t in self._latest.values() if t.triggered_by(event_type)]
        return sorted(found, key=lambda t: t.name)
