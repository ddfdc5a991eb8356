"""Durable workflow runs through the bus vs a hand-written nats-py JetStream pipeline of the
same shape, side by side in one run, on one embedded nats-server.

Shapes: ``seq3`` (three steps in a row) and ``par3`` (three steps at once, joined). Modes:
one run at a time (latency) and 32 runs in flight (throughput). Each side runs as separate
processes (the bench driver starts runs and waits for them):

- bus: ``bus coordinator`` + ``bus agent run workflows:noop`` (a no-op handler; the agent's
  idempotency records, heartbeats and middleware included), runs started with the client API
  (a start request) and finished when ``bus.run.<id>.completed`` arrives.
- raw, the limit: an orchestrator and a worker written directly on nats-py with the same
  durability: work-queue streams for tasks and replies, publishes awaited with
  ``Nats-Msg-Id``, acks after the work, the run state in KV written by compare-and-set on
  every step before the next task is published. No middleware, no idempotency records, no
  notices, no recovery, no timers: what any durable design must at least pay.

Prints JSON: per shape and mode, runs/s and p50/p99 milliseconds for both, and the ratios
(bus / raw for throughput, raw / bus for latency: 1.0 = as good as hand-written).

    python bench/workflows.py [--seconds 4] [--inflight 32]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
from cpu import cpu_seconds

from bus import Agent, CallContext

HERE = Path(__file__).parent
AGENT_CONCURRENCY = 64

noop = Agent("noop", retry=None, timeout=3600.0, concurrency=AGENT_CONCURRENCY)


@noop.handler
async def passthrough(ctx: CallContext) -> Any:
    return ctx.task.input


# -- the hand-written pipeline -------------------------------------------------------------

_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder()


_running: set[asyncio.Task[None]] = set()


def _keep(task: asyncio.Task[None]) -> None:
    """Hold a reference until the task ends (the loop keeps only weak ones)."""
    _running.add(task)
    task.add_done_callback(_running.discard)


async def raw_setup(js: Any, p: str) -> None:
    from nats.js.api import KeyValueConfig, RetentionPolicy, StorageType, StreamConfig

    for kind, stream in (("task", "tasks"), ("reply", "replies")):
        with contextlib.suppress(Exception):
            await js.add_stream(
                StreamConfig(
                    name=f"{p}_{stream}".upper(),
                    subjects=[f"{p}.{kind}.>"],
                    retention=RetentionPolicy.WORK_QUEUE,
                    storage=StorageType.FILE,
                    duplicate_window=120.0,
                )
            )
    for bucket in ("runs", "done"):
        with contextlib.suppress(Exception):
            await js.create_key_value(
                KeyValueConfig(bucket=f"{p}_{bucket}", storage=StorageType.FILE)
            )


async def pull_loop(js: Any, stream: str, durable: str, subject: str, handle: Any) -> None:
    """Fetch as many messages as there are free slots and handle each in its own task."""
    psub = await js.pull_subscribe(subject, durable=durable, stream=stream)
    slots = asyncio.Semaphore(AGENT_CONCURRENCY)

    async def run(msg: Any) -> None:
        try:
            await handle(msg)
        finally:
            slots.release()

    while True:
        await slots.acquire()
        free = 1
        while free < AGENT_CONCURRENCY and not slots.locked():
            await slots.acquire()
            free += 1
        try:
            msgs = await psub.fetch(free, timeout=1.0)
        except Exception:
            msgs = []
        for _ in range(free - len(msgs)):
            slots.release()
        for msg in msgs:
            _keep(asyncio.create_task(run(msg)))


async def raw_worker(url: str, p: str, idempotent: bool) -> None:
    """Answer tasks; with ``idempotent``, like an agent: look the task id up in KV first and
    record the reply there before publishing it (what makes a redelivered task run once)."""
    import nats
    import nats.js.errors

    nc = await nats.connect(url)
    js = nc.jetstream()
    await raw_setup(js, p)
    done = await js.key_value(f"{p}_done")

    async def handle(msg: Any) -> None:
        task = _dec.decode(msg.data)
        key = task["id"].replace("/", ".")
        body = None
        if idempotent:
            with contextlib.suppress(nats.js.errors.KeyNotFoundError):
                body = (await done.get(key)).value
        if body is None:
            reply = {
                "task": task["id"],
                "run": task["run"],
                "step": task["step"],
                "out": task["in"],
            }
            body = _enc.encode(reply)
            if idempotent:
                await done.put(key, body)
        await js.publish(f"{p}.reply.{task['run']}", body, headers={"Nats-Msg-Id": task["id"]})
        await msg.ack()

    print("ready", flush=True)
    await pull_loop(js, f"{p}_tasks".upper(), f"{p}-worker", f"{p}.task.>", handle)


async def raw_orchestrator(url: str, p: str) -> None:
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    await raw_setup(js, p)
    kv = await js.key_value(f"{p}_runs")
    known: dict[str, tuple[dict[str, Any], int]] = {}
    locks: dict[str, asyncio.Lock] = {}

    async def send(run: str, step: int, value: Any) -> None:
        task = {"id": f"{run}/{step}", "run": run, "step": step, "in": value}
        await js.publish(f"{p}.task.noop", _enc.encode(task), headers={"Nats-Msg-Id": task["id"]})

    async def on_start(msg: Any) -> None:
        req = _dec.decode(msg.data)
        state = {"shape": req["shape"], "done": {}, "value": req["input"]}
        known[req["run"]] = (state, await kv.create(req["run"], _enc.encode(state)))
        first = [0] if req["shape"] == "seq3" else [0, 1, 2]
        await asyncio.gather(*(send(req["run"], i, req["input"]) for i in first))
        await msg.respond(b"{}")

    async def on_reply(msg: Any) -> None:
        reply = _dec.decode(msg.data)
        run = reply["run"]
        lock = locks.setdefault(run, asyncio.Lock())
        async with lock:
            state, revision = known[run]
            state["done"][str(reply["step"])] = reply["out"]
            revision = await kv.update(run, _enc.encode(state), last=revision)
            known[run] = (state, revision)
            finished = len(state["done"]) == 3
            if not finished and state["shape"] == "seq3":
                await send(run, reply["step"] + 1, reply["out"])
        if finished:
            known.pop(run, None)
            locks.pop(run, None)
            await nc.publish(f"{p}.done.{run}", _enc.encode(reply["out"]))
        await msg.ack()

    async def spawn_start(msg: Any) -> None:
        _keep(asyncio.create_task(on_start(msg)))

    await nc.subscribe(f"{p}.start", queue=p, cb=spawn_start)
    print("ready", flush=True)
    await pull_loop(js, f"{p}_replies".upper(), f"{p}-orchestrator", f"{p}.reply.>", on_reply)


# -- drivers ------------------------------------------------------------------------------

Start = Callable[[str, str], Awaitable[None]]


class Finishes:
    """Futures of runs in flight, resolved by completion notices."""

    def __init__(self) -> None:
        self.waiting: dict[str, asyncio.Future[None]] = {}

    def expect(self, run_id: str) -> asyncio.Future[None]:
        future = self.waiting[run_id] = asyncio.get_running_loop().create_future()
        return future

    async def on_done(self, msg: Any) -> None:
        run_id = msg.subject.split(".")[2]
        future = self.waiting.pop(run_id, None)
        if future is not None and not future.done():
            future.set_result(None)


class Lanes:
    """Runs started by ``lanes`` concurrent loops, each waiting for its run to finish."""

    def __init__(self, start: Start, finishes: Finishes) -> None:
        self.start = start
        self.finishes = finishes
        self.latencies: list[float] = []
        self.runs = 0
        self.elapsed = 0.0

    async def drive(self, shape: str, lanes: int, seconds: float) -> None:
        deadline = time.perf_counter() + seconds

        async def one_lane() -> None:
            while time.perf_counter() < deadline:
                run_id = uuid.uuid4().hex
                done = self.finishes.expect(run_id)
                t0 = time.perf_counter()
                await self.start(shape, run_id)
                await asyncio.wait_for(done, 30)
                self.latencies.append(time.perf_counter() - t0)

        began = time.perf_counter()
        await asyncio.gather(*(one_lane() for _ in range(lanes)))
        self.elapsed += time.perf_counter() - began

    def summary(self, cpu: dict[str, float]) -> dict[str, Any]:
        lat = sorted(self.latencies)
        return {
            "runs": len(lat),
            "runs_per_s": round(len(lat) / self.elapsed, 1),
            "p50_ms": round(statistics.median(lat) * 1000, 2),
            "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 2),
            "cpu_ms_per_run": {k: round(v * 1000 / len(lat), 2) for k, v in cpu.items()},
        }


class Side:
    """One system under test: how to start a run, and whose CPU to count."""

    def __init__(self, start: Start, finishes: Finishes, pids: dict[str, int]) -> None:
        self.start = start
        self.finishes = finishes
        self.pids = pids
        self.lanes = Lanes(start, finishes)
        self.cpu = dict.fromkeys(pids, 0.0)

    def reset(self) -> None:
        self.lanes = Lanes(self.start, self.finishes)
        self.cpu = dict.fromkeys(self.pids, 0.0)

    async def round(self, shape: str, lanes: int, seconds: float) -> None:
        before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        await self.lanes.drive(shape, lanes, seconds)
        for name, pid in self.pids.items():
            self.cpu[name] += cpu_seconds(pid) - before[name]


async def compare(
    sides: dict[str, Side], shape: str, lanes: int, seconds: float, rounds: int
) -> dict[str, Any]:
    """Alternate short rounds of every side, so machine noise hits all alike."""
    for side in sides.values():
        await side.round(shape, lanes, 0.5)  # warm up
        side.reset()
    for _ in range(rounds):
        for side in sides.values():
            await side.round(shape, lanes, seconds / rounds)
    out: dict[str, Any] = {name: side.lanes.summary(side.cpu) for name, side in sides.items()}
    for side in sides.values():
        side.reset()
    bus = out["bus"]
    for name in sides:
        if name == "bus":
            continue
        other = out[name]
        out[f"vs_{name}"] = {
            "throughput": round(bus["runs_per_s"] / other["runs_per_s"], 2),
            "p50": round(other["p50_ms"] / bus["p50_ms"], 2),
            "cpu": round(
                sum(other["cpu_ms_per_run"].values()) / sum(bus["cpu_ms_per_run"].values()), 2
            ),
        }
    return out


def spawn(args: list[str], url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BUS_NATS_URL": url, "BUS_LOG_LEVEL": "warning", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, *args],
        env=env,
        cwd=HERE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


RAW = {"raw": False, "raw_idem": True}  # prefix -> the worker keeps idempotency records


async def main(seconds: float, inflight: int, rounds: int) -> dict[str, Any]:
    import nats

    from bus import codec
    from bus.coordinator import workflow_client
    from bus.coordinator.control import StartRequest
    from bus.testing import nats_server, settings_for
    from bus.workflow import Step, Topology, parallel

    topologies = {
        "seq3": Topology.build("seq3", [Step("noop"), Step("noop"), Step("noop")]),
        "par3": Topology.build(
            "par3",
            [parallel(Step("noop", name="a"), Step("noop", name="b"), Step("noop", name="c"))],
        ),
    }
    with nats_server() as server:
        url = server.url
        server_pid = server.process.pid  # type: ignore[union-attr]
        procs = {
            "coordinator": spawn(["-m", "bus", "coordinator"], url),
            "agent": spawn(["-m", "bus", "agent", "run", "workflows:noop"], url),
        }
        for p, idem in RAW.items():
            procs[f"{p}-orchestrator"] = spawn([__file__, "--role", "orchestrator", url, p], url)
            worker = [__file__, "--role", "worker", url, p] + (["--idempotent"] if idem else [])
            procs[f"{p}-worker"] = spawn(worker, url)
        try:
            for name, proc in procs.items():
                if "-" in name:
                    assert proc.stdout is not None
                    assert proc.stdout.readline().strip() == b"ready"
            nc = await nats.connect(url)
            finishes = {name: Finishes() for name in ("bus", *RAW)}
            for state in ("completed", "failed"):
                await nc.subscribe(f"bus.run.*.{state}", cb=finishes["bus"].on_done)
            for p in RAW:
                await nc.subscribe(f"{p}.done.*", cb=finishes[p].on_done)
            async with workflow_client(settings_for(server)) as wf:
                for topology in topologies.values():
                    await wf.registry.register(topology)

            async def bus_start(shape: str, run_id: str) -> None:
                t = topologies[shape]
                request = StartRequest(t.name, t.version, {"x": 1}, run_id=run_id)
                await nc.request("bus.control.start", codec.encode(request), timeout=10)

            def raw_start(p: str) -> Start:
                async def start(shape: str, run_id: str) -> None:
                    body = _enc.encode({"run": run_id, "shape": shape, "input": {"x": 1}})
                    await nc.request(f"{p}.start", body, timeout=10)

                return start

            await _wait_bus_ready(bus_start, finishes["bus"])
            sides = {
                "bus": Side(
                    bus_start,
                    finishes["bus"],
                    {
                        "coordinator": procs["coordinator"].pid,
                        "agent": procs["agent"].pid,
                        "server": server_pid,
                    },
                )
            }
            for p in RAW:
                sides[p] = Side(
                    raw_start(p),
                    finishes[p],
                    {
                        "orchestrator": procs[f"{p}-orchestrator"].pid,
                        "worker": procs[f"{p}-worker"].pid,
                        "server": server_pid,
                    },
                )
            results: dict[str, Any] = {}
            for shape in topologies:
                for lanes in (1, inflight):
                    key = f"{shape}_{'one_at_a_time' if lanes == 1 else f'{lanes}_in_flight'}"
                    results[key] = await compare(sides, shape, lanes, seconds, rounds)
            await nc.close()
            return results
        finally:
            for proc in procs.values():
                proc.terminate()
            for proc in procs.values():
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()


async def _wait_bus_ready(start: Start, finishes: Finishes) -> None:
    """Until a coordinator answers and a first run completes (the agent is consuming)."""
    deadline = time.monotonic() + 30
    while True:
        run_id = uuid.uuid4().hex
        done = finishes.expect(run_id)
        try:
            await start("seq3", run_id)
            await asyncio.wait_for(done, 10)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=6.0, help="measured seconds per side and case"
    )
    parser.add_argument("--inflight", type=int, default=32, help="runs in flight at once")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds per case")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("url", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("prefix", nargs="?", default="raw", help=argparse.SUPPRESS)
    parser.add_argument("--idempotent", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "worker":
        asyncio.run(raw_worker(args.url, args.prefix, args.idempotent))
    elif args.role == "orchestrator":
        asyncio.run(raw_orchestrator(args.url, args.prefix))
    else:
        from bus.observability.logs import configure_logging

        configure_logging(level="warning")  # stdout carries only the JSON report
        print(json.dumps(asyncio.run(main(args.seconds, args.inflight, args.rounds)), indent=2))
