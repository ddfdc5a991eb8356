"""End to end: real agent and coordinator processes run workflows; then /metrics, promtool,
the agents' JSON logs and ``bus stats --json`` must all agree with the runs that were made."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bus.server import free_port
from bus.settings import Settings
from bus.testing import spawn_bus

AGENTS = """
from bus import Agent, PermanentError

alpha = Agent("obs-alpha", version="1")
beta = Agent("obs-beta", version="1")


@alpha.handler
async def first(data: dict) -> dict:
    return {**data, "alpha": True}


@beta.handler
async def second(data: dict) -> dict:
    if data.get("fail"):
        raise PermanentError("asked to fail")
    return {**data, "beta": True}
"""

TOPOLOGY = """
name: obs-flow
steps:
  - agent: obs-alpha
  - agent: obs-beta
"""

GOOD, BAD = 3, 2


class Proc:
    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process = process
        self.port = port
        self.log = Path(process.log_path)  # type: ignore[attr-defined]

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "obs_agents.py").write_text(AGENTS)
    (tmp_path / "topologies").mkdir()
    (tmp_path / "topologies" / "obs-flow.yaml").write_text(TOPOLOGY)
    return tmp_path


@pytest.fixture
def processes(settings: Settings, workdir: Path) -> Iterator[dict[str, Proc]]:
    env = {"BUS_LOG_FORMAT": "json", "BUS_LOG_LEVEL": "info"}
    started: dict[str, Proc] = {}
    commands = {
        "alpha": ["agent", "run", "obs_agents:alpha"],
        "beta": ["agent", "run", "obs_agents:beta"],
        "coordinator": ["coordinator", "--topologies", str(workdir / "topologies")],
    }
    try:
        for name, args in commands.items():
            port = free_port()
            process = spawn_bus([*args, "--metrics-port", str(port)], settings, env=env,
                                cwd=str(workdir))  # fmt: skip
            started[name] = Proc(process, port)
        yield started
    finally:
        for proc in started.values():
            if proc.process.poll() is None:
                proc.process.send_signal(signal.SIGTERM)
        for proc in started.values():
            try:
                proc.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.process.kill()
                proc.process.wait()
            os.unlink(proc.log)


async def wait_healthy(client: httpx.AsyncClient, proc: Proc, deadline: float = 30.0) -> None:
    with anyio.fail_after(deadline):
        while True:
            assert proc.process.poll() is None, proc.log.read_text()
            try:
                response = await client.get(f"http://127.0.0.1:{proc.port}/healthz")
                if response.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await anyio.sleep(0.1)  # polling: no event tells us another process is ready


async def bus(settings: Settings, cwd: Path, *args: str, codes: tuple[int, ...] = (0,)) -> Any:
    """``bus ARGS --json`` to completion: its JSON output (logs go to stderr)."""
    env = {**os.environ, "BUS_NATS_URL": ",".join(settings.servers), "BUS_PREFIX": "bus"}
    result = await anyio.run_process(
        [sys.executable, "-m", "bus", *args], env=env, cwd=str(cwd), check=False
    )
    assert result.returncode in codes, result.stderr.decode()
    return json.loads(result.stdout)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.slow
async def test_a_workflow_seen_through_metrics_logs_and_stats(
    settings: Settings, workdir: Path, processes: dict[str, Proc]
) -> None:
    async with httpx.AsyncClient() as client:
        for proc in processes.values():
            await wait_healthy(client, proc)

        runs = []
        for i in range(GOOD + BAD):
            payload = json.dumps({"n": i, "fail": i >= GOOD})
            args = ("run", "obs-flow", "--input", payload, "--wait", "--timeout", "30", "--json")
            runs.append(await bus(settings, workdir, *args, codes=(0, 1)))  # 1: the run failed
        assert [r["state"] for r in runs] == ["completed"] * GOOD + ["failed"] * BAD

        scraped = {}
        for name, proc in processes.items():
            response = await client.get(f"http://127.0.0.1:{proc.port}/metrics")
            assert response.status_code == 200
            scraped[name] = response.content
    alpha, beta, coordinator = (
        samples(scraped[n].decode()) for n in ("alpha", "beta", "coordinator")
    )

    # -- metrics moved by exactly the runs made
    assert value(alpha, "bus_messages_total", agent="obs-alpha", outcome="ok") == GOOD + BAD
    assert value(beta, "bus_messages_total", agent="obs-beta", outcome="ok") == GOOD
    assert value(beta, "bus_messages_total", agent="obs-beta", outcome="permanent") == BAD
    assert value(alpha, "bus_handler_seconds_count", agent="obs-alpha") == GOOD + BAD
    assert value(beta, "bus_retries_total", agent="obs-beta") == 0  # permanent: never retried
    flow = {"topology": "obs-flow"}
    assert value(coordinator, "bus_runs_total", state="completed", **flow) == GOOD
    assert value(coordinator, "bus_runs_total", state="failed", **flow) == BAD
    assert value(coordinator, "bus_run_seconds_count", **flow) == GOOD + BAD

    # -- the exposition is valid
    if shutil.which("promtool"):
        for name, text in scraped.items():
            command = ["promtool", "check", "metrics"]
            result = await anyio.run_process(command, input=text, check=False)
            assert result.returncode == 0, (name, result.stdout + result.stderr)

    # -- bus stats agrees
    stats = await bus(settings, workdir, "stats", "--json", "--wait", "0.5")
    (topology,) = [t for t in stats["topologies"] if t["topology"] == "obs-flow"]
    assert topology["runs"] == GOOD + BAD
    assert topology["states"] == {"completed": GOOD, "failed": BAD}
    assert topology["success_rate"] == GOOD / (GOOD + BAD)
    assert topology["avg_s"] is not None
    assert topology["p99_s"] >= topology["p50_s"] > 0
    agents = {a["agent"]: a for a in stats["agents"]}
    assert agents["obs-alpha"]["calls"] == GOOD + BAD
    assert agents["obs-alpha"]["success_rate"] == 1.0
    assert agents["obs-beta"]["calls"] == GOOD + BAD
    assert agents["obs-beta"]["errors"] == BAD
    assert agents["obs-beta"]["p99_ms"] >= agents["obs-beta"]["p50_ms"] > 0

    # -- every agent log line about a run carries its run_id, agent and trace_id
    for name, agent in (("alpha", "obs-alpha"), ("beta", "obs-beta")):
        lines = processes[name].lines()
        for run in runs:
            mine = [line for line in lines if line.get("run_id") == run["run_id"]]
            finished = [line for line in mine if line["event"] in ("task finished", "task failed")]
            assert len(finished) == 1, (name, run["run_id"], mine)
            for line in mine:
                assert line["agent"] == agent
                assert len(line["trace_id"]) == 32
                assert line["task_id"].startswith(run["run_id"])
            assert len({line["trace_id"] for line in mine}) == 1
        failures = [line for line in lines if line["event"] == "task failed"]
        assert len(failures) == (BAD if name == "beta" else 0)
        assert all(line["error_kind"] == "permanent" for line in failures)
