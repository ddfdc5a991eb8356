"""Crash tests: coordinators and agents killed with SIGKILL under load, all real processes.

Runs are started by events (durable in BUS_EVENTS), so no start is lost while no
coordinator is up; effects are counted in files the agent processes append to.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest
from workflow_agents import effects

from bus import codec
from bus.coordinator import workflow_client
from bus.server import NatsServer
from bus.settings import Settings
from bus.testing import spawn_bus
from bus.transport.connection import connect
from bus.workflow.records import RunRecord

pytestmark = pytest.mark.slow

TESTS = Path(__file__).parent
RUNS = int(os.environ.get("BUS_CRASH_RUNS", "1000"))

SEQ3 = """
name: seq3
trigger: crash.seq
steps: [{agent: inc}, {agent: inc}, {agent: inc}]
"""
PAR3 = """
name: par3
trigger: crash.par
steps:
  - parallel: [{agent: inc, name: a}, {agent: inc, name: b}, {agent: inc, name: c}]
"""


class Cluster:
    """The processes of one test, killed at the end whatever happened."""

    def __init__(self, settings: Settings, root: Path) -> None:
        self.settings = settings
        self.topologies = root / "topologies"
        self.effects = root / "effects"
        self.topologies.mkdir()
        self.effects.mkdir()
        (self.topologies / "seq3.yaml").write_text(SEQ3)
        (self.topologies / "par3.yaml").write_text(PAR3)
        self.env = {"BUS_TEST_EFFECTS": str(self.effects), "BUS_LOG_LEVEL": "warning"}
        self.procs: list[subprocess.Popen[bytes]] = []

    def coordinator(self) -> subprocess.Popen[bytes]:
        args = ["coordinator", "--topologies", str(self.topologies), "--ack-wait", "2"]
        return self._spawn(args)

    def agent(self, name: str = "inc") -> subprocess.Popen[bytes]:
        return self._spawn(["agent", "run", f"workflow_agents:{name}", "--ack-wait", "2"])

    def _spawn(self, args: list[str]) -> subprocess.Popen[bytes]:
        proc = spawn_bus(args, self.settings, env=self.env, cwd=str(TESTS))
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()

    def inc_effects(self) -> list[str]:
        return effects(self.effects, "inc")


@pytest.fixture
def cluster(server: NatsServer, settings: Settings, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(settings, tmp_path)
    try:
        yield c
    finally:
        c.close()


def kill9(proc: subprocess.Popen[bytes]) -> None:
    assert proc.poll() is None, f"it died by itself first, see {proc.log_path}"  # type: ignore[attr-defined]
    proc.send_signal(signal.SIGKILL)
    proc.wait()


async def publish_events(settings: Settings, kind: str, count: int, sleep: float = 0) -> None:
    nc = await connect(settings)
    js = nc.jetstream()
    try:
        from bus.subjects import Subjects
        from bus.transport.jetstream import ensure_streams

        await ensure_streams(js, Subjects())
        for i in range(count):
            headers = {"ce-id": f"{kind}-{i}", "Nats-Msg-Id": f"{kind}-{i}"}
            data = {"n": 0, "i": i, "sleep": sleep} if sleep else {"n": 0, "i": i}
            await js.publish(f"bus.event.crash.{kind}", codec.encode(data), headers=headers)
    finally:
        await nc.close()


async def replies_delivered(settings: Settings) -> int:
    """How many replies coordinators were handed so far (redeliveries included)."""
    nc = await connect(settings)
    try:
        info = await nc.jetstream().consumer_info("BUS_REPLIES", "coordinator")
        return int(info.delivered.consumer_seq or 0)
    except Exception:
        return 0
    finally:
        await nc.close()


async def wait_for_replies(settings: Settings, count: int) -> None:
    with anyio.fail_after(60, reason=f"timed out waiting for {count} replies"):
        while await replies_delivered(settings) < count:
            await anyio.sleep(0.02)


async def finished_runs(settings: Settings) -> list[RunRecord]:
    async with workflow_client(settings) as wf:
        return [r for r in await wf.list_runs() if r.terminal]


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    with anyio.fail_after(timeout, reason=f"timed out waiting for {what}"):
        while not predicate():
            await anyio.sleep(0.05)


async def wait_all_finished(settings: Settings, count: int, timeout: float) -> list[RunRecord]:
    with anyio.fail_after(timeout, reason=f"timed out waiting for {count} runs"):
        while True:
            runs = await finished_runs(settings)
            if len(runs) >= count:
                return runs
            await anyio.sleep(0.25)


def assert_exactly_once(lines: list[str], runs: list[RunRecord], paths: list[str]) -> None:
    twice = [line for line, n in Counter(lines).items() if n > 1]
    assert not twice, f"{len(twice)} steps ran twice, e.g. {twice[:3]}"
    expected = {f"{r.run_id}/{p}/1" for r in runs for p in paths}
    assert set(lines) == expected


async def test_coordinator_killed_three_times_loses_and_repeats_nothing(
    cluster: Cluster, settings: Settings
) -> None:
    started = time.monotonic()
    kills: list[str] = []
    cluster.agent()
    coordinator = cluster.coordinator()
    await publish_events(settings, "seq", RUNS)
    for _ in range(3):
        # Kill each incarnation only once it has been applying replies for a while.
        base = await replies_delivered(settings)
        await wait_for_replies(settings, base + RUNS * 3 // 5)
        kill9(coordinator)
        kills.append(f"{len(cluster.inc_effects())}@{time.monotonic() - started:.1f}s")
        coordinator = cluster.coordinator()
    runs = await wait_all_finished(settings, RUNS, 60)
    elapsed = time.monotonic() - started
    assert len(runs) == RUNS
    assert {r.state for r in runs} == {"completed"}
    assert sorted(r.output["i"] for r in runs) == list(range(RUNS))
    assert all(r.output["n"] == 3 for r in runs)
    assert_exactly_once(cluster.inc_effects(), runs, ["0", "1", "2"])
    print(
        f"\n{RUNS} three-step runs in {elapsed:.1f}s, coordinator SIGKILLed at (steps@time) {kills}"
    )


async def test_two_coordinators_racing_lose_no_update(cluster: Cluster, settings: Settings) -> None:
    count = max(RUNS // 4, 50)
    cluster.agent()
    cluster.agent()
    cluster.coordinator()
    cluster.coordinator()
    await publish_events(settings, "par", count)
    await publish_events(settings, "seq", count)
    runs = await wait_all_finished(settings, 2 * count, 60)
    assert {r.state for r in runs} == {"completed"}
    par = [r for r in runs if r.topology == "par3"]
    assert all(set(r.output) == {"a", "b", "c"} for r in par), "a branch's result was lost"
    seq = [r for r in runs if r.topology == "seq3"]
    assert all(r.output["n"] == 3 for r in seq)
    lines = cluster.inc_effects()
    assert_exactly_once([line for line in lines if "/0." in line], par, ["0.0", "0.1", "0.2"])
    assert_exactly_once([line for line in lines if "/0." not in line], seq, ["0", "1", "2"])


async def test_an_agent_replica_killed_mid_load_loses_no_run(
    cluster: Cluster, settings: Settings
) -> None:
    count = max(RUNS // 4, 50)
    doomed = cluster.agent()
    cluster.agent()
    cluster.coordinator()
    await publish_events(settings, "seq", count, sleep=0.1)
    started = f"inc-started-{doomed.pid}"

    def holding() -> set[str]:
        return set(effects(cluster.effects, started)) - set(cluster.inc_effects())

    # Kill it while it holds a task (each takes 0.1 s): when the coordinator hands out tasks
    # slower than two replicas take them, a replica is often idle for a moment.
    await wait_until(
        lambda: len(effects(cluster.effects, started)) >= count // 3 and bool(holding()),
        60,
        "work in hand",
    )
    kill9(doomed)
    in_hand = holding()
    runs = await wait_all_finished(settings, count, 60)
    assert {r.state for r in runs} == {"completed"}
    assert all(r.output["n"] == 3 for r in runs)
    expected = {f"{r.run_id}/{p}/1" for r in runs for p in ("0", "1", "2")}
    assert set(cluster.inc_effects()) == expected  # at least once; a killed call may repeat
    assert in_hand, "the replica was killed with no task in hand"
    assert in_hand <= set(cluster.inc_effects())  # what it held was redelivered and done
