"""A 3-node JetStream cluster on loopback: the bus's streams and buckets at R3, and work that
goes on when one node is killed with SIGKILL (the client fails over to another URL)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import anyio
import nats.errors
import pytest
from nats.aio.client import Client as NATS
from workflow_agents import effects, inc

from bus.coordinator import Coordinator, CoordinatorOptions, workflow_client
from bus.errors import BusError
from bus.server import NatsServer, ServerOptions, free_port
from bus.subjects import Subjects
from bus.testing import running_agent, settings_for
from bus.transport.connection import connect
from bus.transport.jetstream import BUCKETS, ensure_all
from bus.transport.kv import RevisionMismatchError
from bus.workflow import Step, Topology

pytestmark = pytest.mark.slow

S = Subjects()
T = TypeVar("T")
RETRYABLE = (nats.errors.Error, TimeoutError, OSError, BusError)


def cluster_options(size: int = 3) -> list[ServerOptions]:
    ports = [free_port() for _ in range(size)]
    return [
        ServerOptions(
            server_name=f"n{i}",
            cluster_name="bus",
            cluster_port=port,
            routes=tuple(f"nats://127.0.0.1:{p}" for p in ports if p != port),
        )
        for i, port in enumerate(ports)
    ]


@pytest.fixture
def cluster() -> Iterator[list[NatsServer]]:
    servers = [NatsServer(options) for options in cluster_options()]
    try:
        for server in servers:
            server.start(wait=False)
        for server in servers:
            server.wait_ready(timeout=30)
        yield servers
    finally:
        for server in servers:
            server.cleanup()


async def eventually(action: Callable[[], Awaitable[T]], timeout: float = 20.0) -> T:
    """Retry ``action`` through leader elections and reconnects, up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await action()
        except RETRYABLE:
            if time.monotonic() > deadline:
                raise
            await anyio.sleep(0.2)


def _connected_port(nc: NATS) -> int | None:
    url = nc.connected_url
    return url.port if url is not None and nc.is_connected else None


async def test_r3_streams_and_buckets_survive_the_kill_of_one_node(
    cluster: list[NatsServer],
) -> None:
    nc = await connect(settings_for(cluster, replicas=3))
    try:
        js = nc.jetstream()
        buckets = await eventually(lambda: ensure_all(nc, S, replicas=3))
        for stream in [
            S.tasks_stream,
            S.replies_stream,
            S.events_stream,
            S.dlq_stream,
            *(f"KV_{S.bucket(name)}" for name in BUCKETS),
        ]:
            info = await js.stream_info(stream)
            assert info.config.num_replicas == 3, stream
            assert info.cluster is not None, stream
            assert len(info.cluster.replicas or []) == 2, stream

        async def publish(i: int) -> None:
            await js.publish(S.task("alpha"), str(i).encode(), headers={"Nats-Msg-Id": f"t{i}"})

        for i in range(100):
            await eventually(lambda i=i: publish(i))
        sub = await eventually(
            lambda: js.pull_subscribe(S.task("alpha"), durable="alpha", stream=S.tasks_stream)
        )
        runs = buckets["runs"]
        revision = await eventually(lambda: runs.create("run-1", b"pending"))
        got: list[int] = []

        async def take(n: int) -> None:
            while len(got) < n:
                for msg in await sub.fetch(min(25, n - len(got)), timeout=2):
                    await msg.ack_sync()
                    got.append(int(msg.data))

        await eventually(lambda: take(50))

        victim = next(s for s in cluster if s.port == _connected_port(nc))
        victim.kill()
        with anyio.fail_after(20):
            while _connected_port(nc) in (None, victim.port):
                await anyio.sleep(0.05)

        for i in range(100, 150):
            await eventually(lambda i=i: publish(i))
        await eventually(lambda: take(150), timeout=30)
        revision = await eventually(lambda: runs.update("run-1", b"running", revision))
        with pytest.raises(RevisionMismatchError):
            await runs.update("run-1", b"stale", revision - 1)
        entry = await eventually(lambda: runs.get("run-1"))

        assert sorted(got) == list(range(150))
        assert entry is not None
        assert entry.value == b"running"
        info = await js.stream_info(S.tasks_stream)
        assert info.state.messages == 0
    finally:
        await nc.close()


TWO_STEPS = Topology.build("cluster-seq", [Step("inc"), Step("inc")])
RUNS = 300


async def test_runs_in_flight_all_complete_once_when_a_node_is_killed(
    cluster: list[NatsServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BUS_TEST_EFFECTS", str(tmp_path))
    settings = settings_for(cluster, replicas=3)
    nc = await connect(settings)
    try:
        await eventually(lambda: ensure_all(nc, S, replicas=3))
    finally:
        await nc.close()
    coordinator = Coordinator(settings, CoordinatorOptions(rescan_interval=0.5))
    async with (
        coordinator.running(),
        running_agent(inc, settings),
        workflow_client(settings) as wf,
    ):
        run_ids = [f"cluster-{i:03d}" for i in range(RUNS)]
        started = 0
        enough = anyio.Event()

        async def start(run_id: str) -> None:
            nonlocal started
            # A start with a given run id is idempotent, so a retry through the failover
            # never makes a second run.
            await eventually(lambda: wf.start_run(TWO_STEPS, {"n": 0}, run_id=run_id))
            started += 1
            if started == RUNS // 3:
                enough.set()

        async with anyio.create_task_group() as starts:
            for run_id in run_ids:
                starts.start_soon(start, run_id)
            await enough.wait()
            cluster[0].kill()  # while runs are starting, dispatched and replied to
        # A read during the failover may time out (no leader yet): a watcher retries.
        records = [
            await eventually(lambda r=run_id: wf.wait_run(r, timeout=30), timeout=60)
            for run_id in run_ids
        ]

    assert [r.state for r in records] == ["completed"] * RUNS
    assert all(r.output == {"n": 2} for r in records)
    runs = Counter(task_id.split("/")[0] for task_id in effects(tmp_path, "inc"))
    steps = Counter(effects(tmp_path, "inc"))
    assert set(runs) == set(run_ids)
    assert max(steps.values()) == 1, steps.most_common(3)
    assert len(steps) == 2 * RUNS
