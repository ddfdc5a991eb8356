"""``bus stats --json`` and discovery ``gather`` against a real nats-server.

Run records are written to ``bus_runs`` as the coordinator stores them (MessagePack maps) and
agent instances are real NATS micro services reporting ``stats_data``, so this covers the
command's I/O; the end-to-end test with real agent and coordinator processes is in
``test_observability_e2e.py``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import anyio
from nats.aio.client import Client as NATS

from bus import codec
from bus.messages import new_id
from bus.observability.stats import LatencyWindow, stats_data
from bus.settings import Settings
from bus.subjects import Subjects
from bus.transport.discovery import gather
from bus.transport.jetstream import ensure_bucket
from bus.transport.micro import EndpointDef, start_service
from bus.transport.wire import Message


async def _noop(_: Message) -> None:
    return None


async def start_agent(nc: NATS, name: str, window: LatencyWindow, breaker: str) -> Any:
    endpoint = EndpointDef(name="default", subject=f"bus.agent.{name}", queue_group=name,
                           metadata={}, handler=_noop)  # fmt: skip
    return await start_service(
        nc,
        name=name,
        version="1.0.0",
        description="",
        metadata={"agent": name, "prefix": "bus"},
        endpoints=[endpoint],
        stats_data=lambda _endpoint: stats_data(window, breaker={"state": breaker}),
    )


async def test_gather_collects_every_instance(nc: NATS) -> None:
    services = [await start_agent(nc, "planner", LatencyWindow(), "closed") for _ in range(3)]
    payloads = await gather(nc, "$SRV.PING.planner", wait=0.5)
    assert len(payloads) == 3
    assert {json.loads(p)["id"] for p in payloads} == {s.id for s in services}
    assert len(await gather(nc, "$SRV.PING.planner", wait=5.0, limit=2)) == 2
    assert await gather(nc, "$SRV.PING.nobody", wait=0.2) == []
    for service in services:
        await service.stop()


def _run(topology: str, state: str, seconds: float | None, agents: list[str]) -> dict[str, Any]:
    created = 1_700_000_000.0
    return {
        "run_id": new_id(),
        "topology": topology,
        "state": state,
        "input": {"path": "."},
        "created_at": created,
        "finished_at": None if seconds is None else created + seconds,
        "steps": {
            str(i): {"agent": a, "state": "succeeded", "attempts": 1} for i, a in enumerate(agents)
        },
    }


async def test_bus_stats_json_numbers(nc: NATS, settings: Settings) -> None:
    runs = await ensure_bucket(nc, Subjects(), "runs")
    records = [
        _run("review", "completed", 1.0, ["planner", "linter"]),
        _run("review", "completed", 3.0, ["planner", "linter"]),
        _run("review", "failed", 2.0, ["planner"]),
        _run("review", "running", None, ["planner"]),
        _run("docs", "completed", 0.5, ["docs"]),
    ]
    for record in records:
        await runs.put(record["run_id"], codec.encode(record))
    planner_a, planner_b, linter = LatencyWindow(), LatencyWindow(), LatencyWindow()
    for ms in (10.0, 20.0, 30.0):
        planner_a.record(ms, ok=True, cache="miss")
    planner_b.record(40.0, ok=False)
    linter.record(5.0, ok=True, cache="hit")
    services = [
        await start_agent(nc, "planner", planner_a, "closed"),
        await start_agent(nc, "planner", planner_b, "open"),
        await start_agent(nc, "linter", linter, "closed"),
    ]

    summary = await _bus_json(settings, "stats", "--json", "--wait", "0.5")
    review, docs = _by(summary["topologies"], "topology", "review", "docs")
    assert review["runs"] == 4
    assert review["states"] == {"completed": 2, "failed": 1, "running": 1}
    assert review["success_rate"] == round(2 / 3, 4)
    assert review["avg_s"] == 2.0
    assert review["p50_s"] == 2.0
    assert docs["runs"] == 1
    planner, linter_stats = _by(summary["agents"], "agent", "planner", "linter")
    assert planner["instances"] == 2
    assert (planner["calls"], planner["errors"], planner["success_rate"]) == (4, 1, 0.75)
    assert planner["avg_ms"] == 25.0
    assert planner["p99_ms"] == 40.0
    assert planner["breaker"] == "open"
    assert planner["cache_hit_rate"] == 0.0
    assert linter_stats["cache_hit_rate"] == 1.0

    filtered = await _bus_json(settings, "stats", "--json", "--topology", "docs", "--wait", "0.3")
    assert [t["topology"] for t in filtered["topologies"]] == ["docs"]
    assert filtered["agents"] == []  # no live "docs" agent answered

    text = await _bus_text(settings, "stats", "--wait", "0.3")
    assert "review" in text
    assert "66.7%" in text
    assert "planner" in text
    assert "open" in text
    for service in services:
        await service.stop()


async def test_bus_stats_on_an_empty_bus(settings: Settings) -> None:
    summary = await _bus_json(settings, "stats", "--json", "--wait", "0.2")
    assert summary == {"topologies": [], "agents": []}
    text = await _bus_text(settings, "stats", "--wait", "0.2")
    assert "no runs" in text


def _by(rows: list[dict[str, Any]], key: str, *names: str) -> list[dict[str, Any]]:
    index = {row[key]: row for row in rows}
    return [index[name] for name in names]


async def _bus(settings: Settings, *args: str) -> str:
    """Run ``bus ARGS`` to completion; its stdout alone (logs go to stderr)."""
    env = {**os.environ, "BUS_NATS_URL": ",".join(settings.servers), "BUS_PREFIX": "bus"}
    command = [sys.executable, "-m", "bus", *args]
    result = await anyio.run_process(command, env=env, check=False)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


async def _bus_json(settings: Settings, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(await _bus(settings, *args))
    return result


async def _bus_text(settings: Settings, *args: str) -> str:
    return await _bus(settings, *args)
