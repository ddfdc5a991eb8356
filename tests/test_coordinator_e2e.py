"""Workflows across real processes: nats-server, a `bus coordinator`, and one `bus agent run`
per agent, each its own process (started once for this module)."""

from __future__ import annotations

import json
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import anyio
import msgspec
import pytest
from workflow_agents import effects

from bus.client import publish_event
from bus.coordinator import UnknownRunError, WorkflowClient, workflow_client
from bus.settings import Settings
from bus.testing import nats_server, settings_for, spawn_bus
from bus.transport.connection import connect

TESTS = Path(__file__).parent
AGENTS = ("inc", "tag", "broken", "backup", "sleepy")

TOPOLOGIES = {
    "seq.yaml": """
        name: seq
        trigger: work.*
        steps: [{agent: inc}, {agent: inc}, {agent: inc}]
    """,
    "par.yaml": """
        name: par
        steps:
          - parallel: [{agent: inc, name: a}, {agent: tag, name: b}, {agent: inc, name: c}]
            merge: by_name
    """,
    "cond.toml": """
        name = "cond"
        [[steps]]
        agent = "inc"
        [[steps]]
        when = "n > 5 and not exists tag"
        then = {agent = "tag"}
        otherwise = [{agent = "inc"}, {agent = "inc"}]
    """,
    "fallback.yaml": """
        name: fallback
        steps:
          - agent: broken
            retry: {attempts: 2, base: 0.05, max: 0.1}
            fallback: backup
    """,
    "timeout.yaml": """
        name: timeout
        steps: [{agent: nobody, timeout: 1}]
    """,
    "timeout_fallback.yaml": """
        name: timeout_fallback
        steps: [{agent: nobody, timeout: 1, fallback: backup}]
    """,
    "slow.yaml": """
        name: slow
        steps: [{agent: sleepy}]
    """,
}


class Bus(msgspec.Struct):
    settings: Settings
    effects: Path
    procs: list[subprocess.Popen[bytes]]


async def _ready(settings: Settings) -> None:
    nc = await connect(settings)
    js = nc.jetstream()
    try:
        with anyio.fail_after(30):
            for stream, consumer in [("BUS_REPLIES", "coordinator")] + [
                ("BUS_TASKS", a) for a in AGENTS
            ]:
                while True:
                    try:
                        await js.consumer_info(stream, consumer)
                        break
                    except Exception:
                        await anyio.sleep(0.05)
        async with workflow_client(settings) as wf:
            with anyio.fail_after(15):
                while True:
                    try:
                        await wf.cancel_run("ping")
                    except UnknownRunError:
                        return  # a coordinator answered
                    except Exception:
                        await anyio.sleep(0.05)
    finally:
        await nc.close()


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bus]:
    root = tmp_path_factory.mktemp("e2e")
    topologies, effect_dir = root / "topologies", root / "effects"
    topologies.mkdir()
    effect_dir.mkdir()
    for name, text in TOPOLOGIES.items():
        (topologies / name).write_text(textwrap.dedent(text))
    env = {"BUS_TEST_EFFECTS": str(effect_dir), "BUS_LOG_LEVEL": "warning"}
    with nats_server() as server:
        settings = settings_for(server)
        procs = [spawn_bus(["coordinator", "--topologies", str(topologies)], settings, env=env)]
        procs += [
            spawn_bus(["agent", "run", f"workflow_agents:{a}"], settings, env=env, cwd=str(TESTS))
            for a in AGENTS
        ]
        try:
            anyio.run(_ready, settings)
            yield Bus(settings, effect_dir, procs)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


async def run(wf: WorkflowClient, topology: str, data: object) -> object:
    run_id = await wf.start_run(topology, data)
    return await wf.wait_run(run_id, timeout=20)


async def test_sequential_parallel_and_conditional_outputs(bus: Bus) -> None:
    async with workflow_client(bus.settings) as wf:
        seq = await run(wf, "seq", {"n": 1})
        par = await run(wf, "par", {"n": 10})
        high = await run(wf, "cond", {"n": 5})
        low = await run(wf, "cond", {"n": 0})
    assert seq.output == {"n": 4}  # type: ignore[attr-defined]
    assert par.output == {"a": {"n": 11}, "b": {"n": 10, "tag": "0.1"}, "c": {"n": 11}}  # type: ignore[attr-defined]
    assert high.output == {"n": 6, "tag": "1.then"}  # type: ignore[attr-defined]
    assert low.output == {"n": 3}  # type: ignore[attr-defined]
    assert low.steps["1.then"].state == "skipped"  # type: ignore[attr-defined]
    assert high.steps["1.otherwise.0"].state == "skipped"  # type: ignore[attr-defined]


async def test_an_event_starts_one_run_per_event_id(bus: Bus) -> None:
    nc = await connect(bus.settings)
    try:
        await publish_event(bus.settings, "work.done", {"n": 100}, event_id="evt-1")
        # The same event id again under another stream id (a producer retrying after the
        # stream's duplicate window) must not start a second run.
        headers = {"ce-id": "evt-1", "Content-Type": "application/json", "Nats-Msg-Id": "x2"}
        await nc.jetstream().publish("bus.event.work.done", b'{"n": 100}', headers=headers)
        structured = json.dumps({"type": "work.structured", "id": "evt-2", "data": {"n": 7}})
        await nc.jetstream().publish(
            "bus.event.work.other",
            structured.encode(),
            headers={"Content-Type": "application/cloudevents+json"},
        )
        await nc.jetstream().publish("bus.event.unrelated", b"{}")  # triggers nothing
    finally:
        await nc.close()
    async with workflow_client(bus.settings) as wf:
        with anyio.fail_after(20):
            while True:
                runs = [r for r in await wf.list_runs() if r.run_id.startswith("ev")]
                if len(runs) >= 2 and all(r.terminal for r in runs):
                    break
                await anyio.sleep(0.1)
        await anyio.sleep(0.5)  # the duplicate had time to start a second run, if it could
        runs = sorted(
            (r for r in await wf.list_runs() if r.run_id.startswith("ev")),
            key=lambda r: r.input["n"],
        )
    assert [(r.topology, r.state, r.input, r.output) for r in runs] == [
        ("seq", "completed", {"n": 7}, {"n": 10}),
        ("seq", "completed", {"n": 100}, {"n": 103}),
    ]


async def test_retry_then_fallback(bus: Bus) -> None:
    async with workflow_client(bus.settings) as wf:
        record = await run(wf, "fallback", {"x": 1})
    step = record.steps["0"]  # type: ignore[attr-defined]
    assert record.state == "completed"  # type: ignore[attr-defined]
    assert record.output == {"by": "backup", "input": {"x": 1}}  # type: ignore[attr-defined]
    assert (step.agent, step.attempts, step.fallback) == ("backup", 3, True)
    tried = [line for line in effects(bus.effects, "broken") if line.startswith(record.run_id)]  # type: ignore[attr-defined]
    assert sorted(tried) == [f"{record.run_id}/0/1", f"{record.run_id}/0/2"]  # type: ignore[attr-defined]


async def test_a_step_with_no_agent_times_out_or_falls_back(bus: Bus) -> None:
    async with workflow_client(bus.settings) as wf:
        with anyio.fail_after(10):
            failed = await run(wf, "timeout", {"x": 1})
            rescued = await run(wf, "timeout_fallback", {"x": 2})
    assert failed.state == "failed"  # type: ignore[attr-defined]
    assert failed.error.kind == "timeout"  # type: ignore[attr-defined]
    assert failed.steps["0"].state == "failed"  # type: ignore[attr-defined]
    assert rescued.state == "completed"  # type: ignore[attr-defined]
    assert rescued.output == {"by": "backup", "input": {"x": 2}}  # type: ignore[attr-defined]
    assert rescued.finished_at - rescued.created_at >= 1.0  # type: ignore[attr-defined]


async def test_cancel_from_the_cli_stops_the_agent_handler(bus: Bus) -> None:
    async with workflow_client(bus.settings) as wf:
        run_id = await wf.start_run("slow", {"seconds": 60})
        with anyio.fail_after(10):
            while f"{run_id}/0/1" not in effects(bus.effects, "sleepy-start"):
                await anyio.sleep(0.05)
        result = await anyio.run_process(
            [*_bus_cmd(), "cancel", run_id, "--json", "--nats", bus.settings.servers[0]],
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["state"] == "cancelled"
        with anyio.fail_after(10):
            while f"{run_id}/0/1" not in effects(bus.effects, "sleepy-cancelled"):
                await anyio.sleep(0.05)
        assert (await wf.get_run(run_id)).state == "cancelled"
    assert f"{run_id}/0/1" not in effects(bus.effects, "sleepy-done")


def _bus_cmd() -> list[str]:
    import sys

    return [sys.executable, "-m", "bus"]
