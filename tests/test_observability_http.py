"""The /metrics and /healthz endpoint, over real sockets."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import anyio
import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from bus.observability.http import serve_http
from bus.observability.metrics import Metrics


class Readiness:
    def __init__(self) -> None:
        self.ready = False
        self.broken = False

    def __call__(self) -> bool:
        if self.broken:
            raise RuntimeError("readiness check crashed")
        return self.ready


@asynccontextmanager
async def serving(
    registry: CollectorRegistry, ready: Readiness | None = None
) -> AsyncIterator[str]:
    """The server on a free port for the block (a fixture would cross tasks on teardown)."""
    async with anyio.create_task_group() as tg:
        ready = ready or Readiness()
        port = await tg.start(partial(serve_http, registry, port=0, host="127.0.0.1", ready=ready))
        yield f"http://127.0.0.1:{port}"
        tg.cancel_scope.cancel()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


async def test_metrics_serves_the_registry(registry: CollectorRegistry) -> None:
    calls = Metrics(registry).calls("planner")
    for _ in range(5):
        calls.record("ok", 0.01)
    async with serving(registry) as url, httpx.AsyncClient() as client:
        response = await client.get(f"{url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    counts = {s.labels["outcome"]: s.value for s in families["bus_messages"].samples}
    assert counts["ok"] == 5
    assert counts["permanent"] == 0


async def test_metrics_speaks_openmetrics_when_asked(registry: CollectorRegistry) -> None:
    Metrics(registry).transition_rejected("late")
    headers = {"Accept": "application/openmetrics-text; version=1.0.0"}
    async with serving(registry) as url, httpx.AsyncClient() as client:
        response = await client.get(f"{url}/metrics", headers=headers)
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")


async def test_healthz_follows_readiness(registry: CollectorRegistry) -> None:
    readiness = Readiness()
    async with serving(registry, readiness) as url, httpx.AsyncClient() as client:
        not_ready = await client.get(f"{url}/healthz")
        readiness.ready = True
        ready = await client.get(f"{url}/healthz")
        readiness.broken = True
        crashed = await client.get(f"{url}/healthz")
    assert not_ready.status_code == 503
    assert ready.status_code == 200
    assert ready.text == "ok\n"
    assert crashed.status_code == 503


async def test_other_paths_and_methods(registry: CollectorRegistry) -> None:
    async with serving(registry) as url, httpx.AsyncClient() as client:
        missing = await client.get(f"{url}/nope")
        posted = await client.post(f"{url}/metrics", content=b"x")
        head = await client.head(f"{url}/metrics")
        query = await client.get(f"{url}/metrics?name[]=bus_runs_total")
    assert missing.status_code == 404
    assert posted.status_code == 405
    assert head.status_code == 200
    assert head.content == b""
    assert query.status_code == 200


async def test_garbage_requests_do_not_stop_the_server(registry: CollectorRegistry) -> None:
    async with serving(registry) as url, httpx.AsyncClient() as client:
        port = int(url.rsplit(":", 1)[1])
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(b"HELLO\r\n\r\n")
            assert (await stream.receive()).startswith(b"HTTP/1.1 400")
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(b"GET /metr")  # hangs up mid-request
        assert (await client.get(f"{url}/metrics")).status_code == 200


async def test_a_busy_port_is_an_oserror(registry: CollectorRegistry) -> None:
    async with serving(registry) as url:
        port = int(url.rsplit(":", 1)[1])
        with pytest.raises(OSError, match="in use"):
            await serve_http(registry, port=port, host="127.0.0.1", ready=lambda: True)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
async def test_scraped_exposition_passes_promtool(registry: CollectorRegistry) -> None:
    metrics = Metrics(registry)
    metrics.init_agent("tester")
    metrics.calls("tester").record("ok", 0.2)
    metrics.run_changed("review", "completed", 3.0)
    async with serving(registry) as url, httpx.AsyncClient() as client:
        response = await client.get(f"{url}/metrics")
    check_with_promtool(response.content)


def check_with_promtool(exposition: bytes) -> None:
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=exposition, capture_output=True, timeout=30
    )
    assert result.returncode == 0, (result.stdout + result.stderr).decode()
