"""The probe the Kubernetes manifests use: an agent's ``/healthz`` on its metrics port says
ready only while it is connected and consuming its durable consumer."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
from agents_for_tests import echo

from bus.runtime.options import ServeOptions
from bus.runtime.service import AgentService
from bus.server import NatsServer, ServerOptions, free_port
from bus.testing import settings_for
from bus.transport.connection import connect


async def status(http: httpx.AsyncClient, url: str) -> int | None:
    """The probe's HTTP status, ``None`` when nothing answers (a failed probe too)."""
    try:
        return (await http.get(url)).status_code
    except httpx.TransportError:
        return None


async def until_status(http: httpx.AsyncClient, url: str, *wanted: int | None) -> None:
    with anyio.fail_after(20):
        while await status(http, url) not in wanted:
            await anyio.sleep(0.1)  # polling: the probe has no event to wait on


async def test_healthz_tracks_the_consumer_and_the_connection(tmp_path: Path) -> None:
    server = NatsServer(ServerOptions(store_dir=str(tmp_path / "store")))
    server.start()
    port = free_port()
    url = f"http://127.0.0.1:{port}/healthz"
    settings = settings_for(server)
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            assert await status(http, url) is None  # nothing answers before the agent serves
            service = AgentService(echo, settings, ServeOptions(metrics_port=port))
            async with service.running():
                assert (await http.get(url)).status_code == 200
                nc = await connect(settings)
                try:
                    info = await nc.jetstream().consumer_info("BUS_TASKS", "echo")
                    assert info.name == "echo"  # ready means its consumer exists
                finally:
                    await nc.close()

                server.kill()
                await until_status(http, url, 503)
                server.start()
                await until_status(http, url, 200)
                service.stop()  # SIGTERM: draining is not ready
                await until_status(http, url, 503, None)
    finally:
        server.cleanup()
