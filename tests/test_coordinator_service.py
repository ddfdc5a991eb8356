"""One coordinator in this process, real nats-server and agents: what it rejects, counts,
recovers and keeps. (The same features across separate processes: test_coordinator_e2e.py.)"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from nats.aio.client import Client as NATS
from workflow_agents import effects, inc, sleepy

from bus import codec
from bus.coordinator import Coordinator, CoordinatorOptions, WorkflowClient, workflow_client
from bus.coordinator.client import CoordinatorUnavailableError
from bus.messages import Reply
from bus.settings import Settings
from bus.subjects import Subjects
from bus.testing import running_agent
from bus.transport.jetstream import ensure_all
from bus.workflow import Step, Topology, start_run

SEQ = Topology.build("seq", [Step("inc"), Step("inc")])
SLOW = Topology.build("slow", [Step("sleepy")])
NOBODY = Topology.build("nobody", [Step("nobody")])


class Tally:
    """A CoordinatorObserver that remembers what it was told."""

    def __init__(self) -> None:
        self.rejected: Counter[str] = Counter()
        self.runs: Counter[tuple[str, str]] = Counter()

    def transition_rejected(self, reason: str) -> None:
        self.rejected[reason] += 1

    def run_changed(self, topology: str, state: str, seconds: float | None) -> None:
        self.runs[topology, state] += 1


@pytest.fixture
def tally() -> Tally:
    return Tally()


@pytest.fixture
def effect_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BUS_TEST_EFFECTS", str(tmp_path))
    return tmp_path


@asynccontextmanager
async def coordinated(settings: Settings, tally: Tally) -> AsyncIterator[WorkflowClient]:
    """A coordinator in this process and a client (task groups cannot span a fixture)."""
    coordinator = Coordinator(settings, CoordinatorOptions(rescan_interval=0.3), observer=tally)
    async with coordinator.running(), workflow_client(settings) as wf:
        yield wf


async def until(predicate: object, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():  # type: ignore[operator]
            await anyio.sleep(0.02)


async def publish_reply(nc: NATS, agent: str, run_id: str, reply: Reply, msg_id: str) -> None:
    subject = Subjects().reply(agent, run_id, reply.task_id)
    await nc.jetstream().publish(subject, codec.encode(reply), headers={"Nats-Msg-Id": msg_id})


async def test_invalid_replies_are_rejected_with_a_reason_and_change_nothing(
    settings: Settings, nc: NATS, tally: Tally
) -> None:
    async with coordinated(settings, tally) as client:
        run_id = await client.start_run(NOBODY, {"x": 1})  # nobody serves the step
        task_id = f"{run_id}/0/1"
        forged = Reply(task_id=task_id, status="ok", output="evil")
        await publish_reply(nc, "inc", run_id, forged, "f1")  # not the agent it went to
        await publish_reply(nc, "nobody", "ghost", forged, "f2")  # no such run
        await publish_reply(nc, "nobody", run_id, Reply(task_id=f"{run_id}/9/1", status="ok"), "f3")
        mismatched = Reply(task_id=task_id, status="ok", run_id="other")
        await publish_reply(nc, "nobody", run_id, mismatched, "f4")  # payload names another run
        await nc.jetstream().publish(Subjects().reply("nobody", run_id, "x"), b"\xc1garbage")
        await until(lambda: sum(tally.rejected.values()) == 5)
        assert tally.rejected == Counter(forged=2, unknown_run=1, unknown_step=1, malformed=1)
        assert (await client.get_run(run_id)).steps["0"].state == "dispatched"

        real = Reply(task_id=task_id, status="ok", output={"by": "test"})
        await publish_reply(nc, "nobody", run_id, real, "ok1")
        record = await client.wait_run(run_id, timeout=10)
        assert (record.state, record.output) == ("completed", {"by": "test"})
        await publish_reply(nc, "nobody", run_id, real, "ok2")  # a second copy: too late
        await until(lambda: tally.rejected["terminal"] == 1)
        assert (await client.get_run(run_id)).output == {"by": "test"}
        assert tally.runs["nobody", "completed"] == 1


async def test_cancel_stops_the_handler_and_rejects_later_replies(
    settings: Settings, nc: NATS, tally: Tally, effect_dir: Path
) -> None:
    async with coordinated(settings, tally) as client, running_agent(sleepy, settings):
        run_id = await client.start_run(SLOW, {"seconds": 60})
        await until(lambda: effects(effect_dir, "sleepy-start"))
        record = await client.cancel_run(run_id)
        assert record.state == "cancelled"
        assert record.steps["0"].state == "skipped"
        await until(lambda: effects(effect_dir, "sleepy-cancelled") == [f"{run_id}/0/1"])
        late = Reply(task_id=f"{run_id}/0/1", status="ok", output=1)
        await publish_reply(nc, "sleepy", run_id, late, "late")
        await until(lambda: tally.rejected["terminal"] == 1)
        assert (await client.get_run(run_id)).state == "cancelled"
        with pytest.raises(Exception, match="already cancelled"):
            await client.cancel_run(run_id)


async def test_a_run_keeps_the_topology_version_it_started_with(
    settings: Settings, tally: Tally, effect_dir: Path
) -> None:
    v1 = Topology.build("grow", [Step("sleepy")])
    v2 = Topology.build("grow", [Step("sleepy"), Step("inc")])
    async with (
        coordinated(settings, tally) as client,
        running_agent(sleepy, settings),
        running_agent(inc, settings),
    ):
        old = await client.start_run(v1, {"seconds": 0.5})
        await client.registry.register(v2)
        new = await client.start_run("grow", {"seconds": 0, "n": 1})
        first, second = (
            await client.wait_run(old, timeout=10),
            await client.wait_run(new, timeout=10),
        )
    assert (first.topology_version, sorted(first.steps)) == (v1.version, ["0"])
    assert first.output == {"slept": True}
    assert (second.topology_version, sorted(second.steps)) == (v2.version, ["0", "1"])
    assert second.output == {"slept": True, "n": 1}


async def test_a_new_coordinator_finishes_runs_nobody_dispatched(
    settings: Settings, nc: NATS, effect_dir: Path
) -> None:
    """A replica died after writing a record and before publishing its tasks."""
    buckets = await ensure_all(nc, Subjects())
    async with workflow_client(settings) as wf:
        await wf.registry.register(SEQ)
    for i in range(5):
        record, _tasks = start_run(SEQ, run_id=f"orphan{i}", input={"n": 0}, now=1.0)
        await buckets["runs"].create(record.run_id, codec.encode(record))  # tasks never sent
    async with (
        running_agent(inc, settings),
        Coordinator(settings).running(),
        workflow_client(settings) as wf,
    ):
        for i in range(5):
            done = await wf.wait_run(f"orphan{i}", timeout=10)
            assert (done.state, done.output) == ("completed", {"n": 2})
    assert len(effects(effect_dir, "inc")) == 10


async def test_start_without_a_coordinator_says_so(settings: Settings) -> None:
    async with workflow_client(settings) as wf:
        with pytest.raises(CoordinatorUnavailableError, match="no coordinator is running"):
            await wf.start_run(SEQ, {})


async def test_wait_run_reports_step_progress(
    settings: Settings, tally: Tally, effect_dir: Path
) -> None:
    seen: list[tuple[str, str]] = []

    def on_update(notice: object) -> None:
        path = getattr(notice, "path", "run")
        seen.append((path, notice.state))  # type: ignore[attr-defined]

    async with coordinated(settings, tally) as client, running_agent(inc, settings):
        run_id = await client.start_run(SEQ, {"n": 0})
        record = await client.wait_run(run_id, on_update=on_update, timeout=10)
    assert record.output == {"n": 2}
    assert ("1", "succeeded") in seen
    assert seen[-1] == ("run", "completed")


async def test_deadlines_of_runs_another_replica_wrote_are_enforced(
    settings: Settings, nc: NATS, tally: Tally
) -> None:
    """The replica that started the run died; this one learns of it only by rescanning."""
    import time

    doomed = Topology.build("doomed", [Step("nobody", timeout=0.5)])
    buckets = await ensure_all(nc, Subjects())
    async with coordinated(settings, tally) as client:
        await client.registry.register(doomed)
        record, _tasks = start_run(doomed, run_id="elsewhere", input=1, now=time.time())
        await buckets["runs"].create(record.run_id, codec.encode(record))
        done = await client.wait_run("elsewhere", timeout=10)
    assert done.state == "failed"
    assert done.error is not None
    assert done.error.kind == "timeout"
