"""RunStore (CAS on bus_runs) and TopologyRegistry (bus_topologies) against a real server."""

from __future__ import annotations

import anyio
import msgspec
import pytest
from nats.aio.client import Client as NATS

from bus.coordinator.registry import TopologyRegistry, UnknownTopologyError
from bus.coordinator.store import KeyExistsError, RunStore
from bus.errors import InvalidTransitionError
from bus.subjects import Subjects
from bus.transport.jetstream import ensure_all
from bus.transport.scan import kv_values
from bus.transport.wire import Wire
from bus.workflow import RunRecord, Step, Topology
from bus.workflow.states import RejectedTransitionError


async def stores(nc: NATS, count: int) -> list[RunStore]:
    """``count`` independent stores on one bucket, as separate coordinator replicas have."""
    buckets = await ensure_all(nc, Subjects())
    return [RunStore(buckets["runs"], Wire(nc)) for _ in range(count)]


def bump(record: RunRecord) -> tuple[RunRecord, int]:
    n = int(record.input) + 1
    return msgspec.structs.replace(record, input=n), n


async def test_create_is_idempotent_and_get_reads_back(nc: NATS) -> None:
    (store,) = await stores(nc, 1)
    stored = await store.create(RunRecord(run_id="r1", topology="t", input=0))
    assert stored.revision > 0
    with pytest.raises(KeyExistsError):
        await store.create(RunRecord(run_id="r1", topology="t", input=99))
    again = await store.get("r1")
    assert again is not None
    assert again.record.input == 0
    assert await store.get("nope") is None
    assert await store.change("nope", bump) is None


async def test_racing_replicas_lose_no_update(nc: NATS) -> None:
    replicas = await stores(nc, 3)
    await replicas[0].create(RunRecord(run_id="r", topology="t", input=0))
    async with anyio.create_task_group() as tg:
        for store in replicas:
            for _ in range(40):
                tg.start_soon(store.change, "r", bump)
    final = await replicas[0].get("r")
    assert final is not None
    assert final.record.input == 120


async def test_a_stale_cache_is_never_trusted_for_a_verdict(nc: NATS) -> None:
    a, b = await stores(nc, 2)
    await a.create(RunRecord(run_id="r", topology="t", input=0))
    await b.change("r", bump)  # a's cache still says 0

    def needs_one(record: RunRecord) -> tuple[RunRecord, None]:
        if record.input != 1:
            raise RejectedTransitionError("not yet", reason="late")
        return msgspec.structs.replace(record, input=2), None

    changed = await a.change("r", needs_one)
    assert changed is not None
    assert changed.after.record.input == 2

    def refuse(record: RunRecord) -> tuple[RunRecord, None]:
        raise RejectedTransitionError("never", reason="terminal")

    with pytest.raises(InvalidTransitionError):
        await a.change("r", refuse)
    unchanged = await b.change("r", lambda r: (r, None))  # no write, a fresh read
    assert unchanged is not None
    assert unchanged.after.record.input == 2


async def test_scan_reads_every_record(nc: NATS) -> None:
    (store,) = await stores(nc, 1)
    for i in range(25):
        await store.create(RunRecord(run_id=f"r{i}", topology="t", input=i))
    seen = sorted([s.record.input async for s in store.scan()])
    assert seen == list(range(25))


async def test_scan_skips_deleted_records_even_when_a_delete_is_the_last_write(nc: NATS) -> None:
    buckets = await ensure_all(nc, Subjects())
    store = RunStore(buckets["runs"], Wire(nc))
    assert [s async for s in store.scan()] == []  # an empty bucket ends the pass at once
    for i in range(5):
        await store.create(RunRecord(run_id=f"r{i}", topology="t", input=i))
    await buckets["runs"].delete("r4")
    with anyio.fail_after(5):
        keys = [key async for key, _, _ in kv_values(Wire(nc), "bus_runs")]
        seen = sorted([s.record.input async for s in store.scan()])
    assert sorted(keys) == ["r0", "r1", "r2", "r3"]
    assert seen == [0, 1, 2, 3]


async def test_registry_keeps_every_version_and_follows_other_writers(nc: NATS) -> None:
    buckets = await ensure_all(nc, Subjects())
    mine = TopologyRegistry(buckets["topologies"], Wire(nc))
    theirs = TopologyRegistry(buckets["topologies"], Wire(nc))
    v1 = Topology.build("review", [Step("a")], trigger="code.*")
    v2 = Topology.build("review", [Step("a"), Step("b")], trigger="code.>")
    assert await mine.register(v1)
    assert not await mine.register(v1)  # same content: nothing to do
    async with anyio.create_task_group() as tg:
        tg.start_soon(theirs.follow)
        assert await mine.register(v2)
        with anyio.fail_after(5):
            while [t.version for t in theirs.triggered_by("code.pushed.main")] != [v2.version]:
                await anyio.sleep(0.02)
        tg.cancel_scope.cancel()
    assert (await theirs.get("review", v1.version)).root == v1.root
    assert (await theirs.get("review")).version == v2.version
    assert [t.name for t in await TopologyRegistry(buckets["topologies"], Wire(nc)).load()] == [
        "review"
    ]
    with pytest.raises(UnknownTopologyError):
        await mine.get("ghost")
    with pytest.raises(UnknownTopologyError):
        await mine.get("review", "0000")


async def test_a_finished_run_is_written_with_its_retention_ttl(nc: NATS) -> None:
    buckets = await ensure_all(nc, Subjects())
    store = RunStore(buckets["runs"], Wire(nc), retention=1.0)
    record = RunRecord(
        run_id="ttl-run", topology="t", topology_version="v", state="running", input=None,
        steps={}, created_at=0.0,
    )  # fmt: skip
    await store.create(record)
    await store.change("ttl-run", lambda r: (msgspec.structs.replace(r, state="completed"), None))
    raw = await nc.jetstream().get_last_msg("KV_bus_runs", "$KV.bus_runs.ttl-run")
    assert raw.headers is not None
    assert raw.headers.get("Nats-TTL") == "1"
