from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from nats.aio.client import Client as NATS

from bus.server import NatsServer
from bus.settings import Settings
from bus.testing import nats_server, settings_for
from bus.transport.connection import connect


@pytest.fixture
def server() -> Iterator[NatsServer]:
    """A fresh nats-server with JetStream on a free port, per test."""
    with nats_server() as srv:
        yield srv


@pytest.fixture
def settings(server: NatsServer) -> Settings:
    return settings_for(server)


@pytest.fixture
async def nc(settings: Settings) -> AsyncIterator[NATS]:
    client = await connect(settings)
    yield client
    await client.close()
