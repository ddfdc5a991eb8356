"""Direct request/reply through an agent vs a raw nats-py responder, side by side in one run.

Each side runs in its own process against the same embedded nats-server; this process is the
client. Prints JSON: req/s at 64 in flight, p50/p99 one at a time, the CPU microseconds the
responder and the server spent per request at 64 in flight, and the ratios bus/raw. The CPU
ratio moves much less than req/s between runs on a noisy machine.

    python bench/request_reply.py [--requests 20000] [--sequential 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import nats
from cpu import cpu_seconds

from bus.server import NatsServer
from bus.testing import settings_for, spawn_bus

HERE = Path(__file__).parent
PAYLOAD = msgspec.msgpack.encode({"n": 1, "text": "x" * 64})


async def one_at_a_time(nc: nats.NATS, subject: str, count: int) -> dict[str, float]:
    latencies = []
    for _ in range(count):
        start = time.perf_counter()
        await nc.request(subject, PAYLOAD, timeout=5)
        latencies.append((time.perf_counter() - start) * 1e6)
    latencies.sort()
    return {
        "p50_us": round(statistics.median(latencies), 1),
        "p99_us": round(latencies[int(len(latencies) * 0.99) - 1], 1),
    }


async def in_flight(nc: nats.NATS, subject: str, total: int, window: int) -> float:
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await nc.request(subject, PAYLOAD, timeout=10)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(window)))
    return total / (time.perf_counter() - start)


async def measure(
    url: str, subject: str, args: argparse.Namespace, pids: tuple[int, ...] = ()
) -> dict[str, float]:
    """One round; with ``pids`` (responder, server) also their CPU per request in flight."""
    nc = await nats.connect(url)
    try:
        for _ in range(200):  # warm up
            await nc.request(subject, PAYLOAD, timeout=5)
        result = await one_at_a_time(nc, subject, args.sequential)
        before = [cpu_seconds(pid) for pid in pids]
        result["rps_64"] = round(await in_flight(nc, subject, args.requests, 64), 1)
        for name, pid, start in zip(("responder", "server"), pids, before, strict=False):
            used = cpu_seconds(pid) - start
            result[f"cpu_us_{name}"] = round(used * 1e6 / args.requests, 1)
        return result
    finally:
        await nc.close()


def best(rounds: list[dict[str, float]]) -> dict[str, float]:
    """The best value of each measure over the rounds."""
    result = {
        "p50_us": min(r["p50_us"] for r in rounds),
        "p99_us": min(r["p99_us"] for r in rounds),
        "rps_64": max(r["rps_64"] for r in rounds),
    }
    for key in ("cpu_us_responder", "cpu_us_server"):
        if all(key in r for r in rounds):
            result[key] = min(r[key] for r in rounds)
    return result


async def wait_for_responder(url: str, subject: str) -> None:
    nc = await nats.connect(url)
    try:
        for _ in range(200):
            try:
                await nc.request(subject, PAYLOAD, timeout=0.5)
                return
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                await asyncio.sleep(0.05)
        raise RuntimeError(f"nothing answers on {subject}")
    finally:
        await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20000, help="requests at 64 in flight")
    parser.add_argument("--sequential", type=int, default=2000, help="requests one at a time")
    parser.add_argument("--agent", default="bench_agents:echo", help="agent to serve")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds; best counts")
    args = parser.parse_args()
    with NatsServer() as server:
        settings = settings_for(server)
        raw = subprocess.Popen(
            [sys.executable, str(HERE / "bench_agents.py"), server.url, "bench.raw"],
            stdout=subprocess.DEVNULL,
        )
        agent = spawn_bus(
            ["agent", "run", args.agent, "--direct-only"],
            settings,
            cwd=str(HERE),
            env={"BUS_LOG_LEVEL": "warning"},
        )
        name = "bench-echo" if args.agent.endswith(":echo") else "bench-bare"
        try:
            asyncio.run(wait_for_responder(server.url, "bench.raw"))
            asyncio.run(wait_for_responder(server.url, f"bus.agent.{name}"))
            # Alternate the two sides and keep each one's best round: this machine is noisy,
            # and noise should hit both alike.
            raw_rounds, bus_rounds = [], []
            server_pid = server.process.pid  # type: ignore[union-attr]
            raw_pids, bus_pids = (raw.pid, server_pid), (agent.pid, server_pid)
            for _ in range(args.rounds):
                raw_rounds.append(asyncio.run(measure(server.url, "bench.raw", args, raw_pids)))
                bus_rounds.append(
                    asyncio.run(measure(server.url, f"bus.agent.{name}", args, bus_pids))
                )
            raw_result, bus_result = best(raw_rounds), best(bus_rounds)
        finally:
            for proc in (raw, agent):
                proc.terminate()
                proc.wait(30)
    report = {
        "benchmark": "direct request/reply",
        "cpus": os.cpu_count(),
        "raw_nats_py": raw_result,
        "bus": bus_result,
        "ratio_rps_64": round(bus_result["rps_64"] / raw_result["rps_64"], 3),
        "ratio_p50": round(bus_result["p50_us"] / raw_result["p50_us"], 3),
        # raw CPU / bus CPU per request (responder + server): 1.0 = as cheap as raw nats-py.
        "ratio_cpu": round(_cpu(raw_result) / _cpu(bus_result), 3) if _cpu(bus_result) else None,
        "targets": {"ratio_rps_64": ">= 0.8", "ratio_p50": "<= 1.3"},
    }
    print(json.dumps(report, indent=2))


def _cpu(result: dict[str, float]) -> float:
    return result.get("cpu_us_responder", 0.0) + result.get("cpu_us_server", 0.0)


if __name__ == "__main__":
    main()
