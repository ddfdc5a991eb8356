"""Durable tasks: replies, idempotency, retries with NAK delays, DLQ, crash and shutdown."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import anyio
import msgspec
import pytest
from agents_for_tests import echo, flaky
from nats.aio.client import Client as NATS

from bus import codec
from bus.messages import Reply, Task
from bus.server import NatsServer
from bus.settings import Settings
from bus.testing import running_agent, spawn_bus


async def publish_task(nc: NATS, task: Task, msg_id: str | None = None) -> None:
    await nc.jetstream().publish(
        f"bus.task.{task.agent}", codec.encode(task), headers={"Nats-Msg-Id": msg_id or task.id}
    )


async def next_replies(nc: NATS, agent: str, count: int, timeout: float = 10) -> list[Reply]:
    sub = await nc.jetstream().pull_subscribe(
        f"bus.reply.{agent}.>", durable=f"test-{agent}", stream="BUS_REPLIES"
    )
    replies: list[Reply] = []
    with anyio.fail_after(timeout):
        while len(replies) < count:
            try:
                msgs = await sub.fetch(count - len(replies), timeout=1)
            except TimeoutError:
                continue
            for m in msgs:
                replies.append(msgspec.msgpack.decode(m.data, type=Reply))
                await m.ack()
    return replies


async def work_queue_empty(nc: NATS, timeout: float = 10) -> None:
    """Wait until every task was acked (replies are published before the ack)."""
    with anyio.fail_after(timeout):
        while (await nc.jetstream().stream_info("BUS_TASKS")).state.messages:
            await anyio.sleep(0.02)


async def consumer_ready(nc: NATS, agent: str, timeout: float = 15) -> None:
    """Wait until a spawned agent has created its durable consumer."""
    js = nc.jetstream()
    with anyio.fail_after(timeout):
        while True:
            try:
                await js.consumer_info("BUS_TASKS", agent)
                return
            except Exception:
                await anyio.sleep(0.05)


def lines(root: Path, kind: str) -> list[str]:
    path = root / f"{kind}.log"
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def effects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BUS_TEST_EFFECTS", str(tmp_path))
    return tmp_path


async def wait_for(predicate: object, timeout: float = 15.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():  # type: ignore[operator]
            await anyio.sleep(0.05)


async def test_task_reply_is_published_and_acked(
    settings: Settings, nc: NATS, effects: Path
) -> None:
    async with running_agent(echo, settings):
        await publish_task(
            nc, Task(id="r1/0/1", run_id="r1", step="0", agent="echo", input={"name": "ada"})
        )
        (reply,) = await next_replies(nc, "echo", 1)
        await work_queue_empty(nc)
    assert reply.task_id == "r1/0/1"
    assert reply.output == {"text": "hello ada"}


async def test_redelivered_task_returns_recorded_reply_without_running_again(
    settings: Settings, nc: NATS, effects: Path
) -> None:
    task = Task(id="r2/0/1", run_id="r2", step="0", agent="echo", input={"name": "once"})
    async with running_agent(echo, settings):
        await publish_task(nc, task, msg_id="first")
        (reply,) = await next_replies(nc, "echo", 1)
        # The same task id as a new stream message, marked as a re-publish (as the coordinator
        # marks recovery): the agent answers from its record.
        await nc.jetstream().publish(
            "bus.task.echo",
            codec.encode(task),
            headers={"Nats-Msg-Id": "second", "Bus-Redispatch": "1"},
        )
        await work_queue_empty(nc)
    assert reply.output == {"text": "hello once"}
    assert lines(effects, "greet") == ["once"]


async def test_a_task_outside_any_run_is_answered_from_its_record_in_the_cache(
    settings: Settings, nc: NATS, effects: Path
) -> None:
    task = Task(id="solo-1", agent="echo", input={"name": "solo"})  # no run: no reply subject
    async with running_agent(echo, settings):
        await publish_task(nc, task, msg_id="first")
        await work_queue_empty(nc)
        await nc.jetstream().publish(
            "bus.task.echo",
            codec.encode(task),
            headers={"Nats-Msg-Id": "second", "Bus-Redispatch": "1"},
        )
        await work_queue_empty(nc)
    assert lines(effects, "greet") == ["solo"]
    assert (await nc.jetstream().stream_info("BUS_REPLIES")).state.messages == 0


async def test_transient_failures_nak_with_growing_delay_then_dead_letter(
    settings: Settings, nc: NATS, effects: Path
) -> None:
    task = Task(id="r3/0/1", run_id="r3", step="0", agent="flaky", input=None)
    async with running_agent(flaky, settings):
        await publish_task(nc, task)
        (reply,) = await next_replies(nc, "flaky", 1)
        await work_queue_empty(nc)  # nothing lingers in the work queue
    runs = [line.split() for line in lines(effects, "flaky")]
    assert [int(r[1]) for r in runs] == [1, 2, 3]
    times = [float(r[2]) for r in runs]
    first_gap, second_gap = times[1] - times[0], times[2] - times[1]
    assert first_gap >= 0.2  # base
    assert second_gap >= 0.4  # base * 2: the NAK delay grows
    assert reply.error is not None
    assert reply.error.kind == "transient"
    sub = await nc.jetstream().pull_subscribe("bus.dlq.flaky", stream="BUS_DLQ")
    (letter,) = await sub.fetch(1, timeout=5)
    assert letter.headers is not None
    assert letter.headers["Bus-Reason"] == "max_deliver"
    assert letter.headers["Bus-Attempts"] == "3"


async def test_undecodable_task_is_dead_lettered_and_terminated(
    settings: Settings, nc: NATS
) -> None:
    async with running_agent(echo, settings):
        await nc.jetstream().publish("bus.task.echo", b"\xc1 not a task")
        sub = await nc.jetstream().pull_subscribe("bus.dlq.echo", stream="BUS_DLQ")
        (letter,) = await sub.fetch(1, timeout=10)
    assert letter.data == b"\xc1 not a task"
    assert letter.headers is not None
    assert letter.headers["Bus-Reason"] == "invalid_input"


def _agent(settings: Settings, ref: str, *extra: str) -> object:
    return spawn_bus(
        ["agent", "run", ref, "--ack-wait", "2", *extra], settings, cwd=str(Path(__file__).parent)
    )


@pytest.mark.slow
async def test_kill_9_mid_task_completes_on_another_replica(
    settings: Settings, nc: NATS, effects: Path
) -> None:
    first = _agent(settings, "agents_for_tests:slow")
    second = None
    try:
        await consumer_ready(nc, "slow")
        await publish_task(
            nc, Task(id="r4/0/1", run_id="r4", step="0", agent="slow", input={"hang_first": True})
        )
        await wait_for(lambda: len(lines(effects, "slow-start")) == 1)
        second = _agent(settings, "agents_for_tests:slow")
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        (reply,) = await next_replies(nc, "slow", 1, timeout=30)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert reply.ok
    assert reply.output["attempt"] == 2
    assert reply.output["pid"] == second.pid


@pytest.mark.slow
async def test_sigterm_finishes_in_flight_work(settings: Settings, nc: NATS, effects: Path) -> None:
    proc = _agent(settings, "agents_for_tests:slow")
    try:
        await consumer_ready(nc, "slow")
        await publish_task(
            nc, Task(id="r5/0/1", run_id="r5", step="0", agent="slow", input={"seconds": 1.5})
        )
        await wait_for(lambda: len(lines(effects, "slow-start")) == 1)
        proc.send_signal(signal.SIGTERM)
        (reply,) = await next_replies(nc, "slow", 1)
        code = await anyio.to_thread.run_sync(proc.wait, 20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert reply.ok
    assert reply.output["attempt"] == 1
    assert code == 0


@pytest.mark.slow
async def test_agent_serves_again_after_server_restart(
    server: NatsServer, settings: Settings, effects: Path
) -> None:
    from bus.client import request_agent
    from bus.transport.connection import connect

    async with running_agent(echo, settings):
        server.stop()
        server.start()
        with anyio.fail_after(20):
            while True:
                try:
                    reply = await request_agent(settings, "echo", {"name": "back"}, timeout=1)
                    break
                except Exception:
                    await anyio.sleep(0.2)
        nc = await connect(settings)
        try:
            await publish_task(
                nc,
                Task(
                    id="r6/0/1", run_id="r6", step="0", agent="echo", input={"name": "durable-back"}
                ),
            )
            (durable,) = await next_replies(nc, "echo", 1, timeout=20)
        finally:
            await nc.close()
    assert reply.output == {"text": "hello back"}
    assert durable.output == {"text": "hello durable-back"}


async def test_a_replayed_task_runs_again_despite_its_record(
    settings: Settings, nc: NATS, effects: Path
) -> None:
    task = Task(id="r7/0/1", run_id="r7", step="0", agent="echo", input={"name": "again"})
    async with running_agent(echo, settings):
        await publish_task(nc, task, msg_id="first")
        await next_replies(nc, "echo", 1)
        await work_queue_empty(nc)
        await nc.jetstream().publish(
            "bus.task.echo", codec.encode(task), headers={"Bus-Replay": "1"}
        )
        await work_queue_empty(nc)
    assert lines(effects, "greet") == ["again", "again"]


async def test_a_handler_longer_than_the_ack_wait_is_kept_alive_by_heartbeats(
    settings: Settings, nc: NATS, effects: Path
) -> None:
    from agents_for_tests import slow

    from bus.runtime.options import ServeOptions
    from bus.runtime.service import AgentService

    service = AgentService(slow, settings, ServeOptions(ack_wait=1.0))
    async with service.running():
        await publish_task(
            nc, Task(id="r8/0/1", run_id="r8", step="0", agent="slow", input={"seconds": 2.5})
        )
        (reply,) = await next_replies(nc, "slow", 1)
        await work_queue_empty(nc)
    assert reply.output["attempt"] == 1
    assert len(lines(effects, "slow-start")) == 1  # never redelivered while it ran
