"""What metrics + logging cost on the hot path: one chain with and without ``observe``.

Every variant wraps the same real handler adapter (msgspec input conversion, an async handler,
output to plain data), so the difference is exactly the ``observe`` middleware:

- ``bare``: no observe.
- ``metrics``: observe with Prometheus metrics and the latency window; logging configured at
  ``warning``, so the per-call info line is filtered out (the cheapest production setting).
- ``metrics_logs``: observe with metrics and one JSON ``task finished`` line per call
  (the default ``info`` level), written to /dev/null.

Rounds alternate the variants and the best round of each counts, so machine noise hits all
alike. A no-op handler makes ``bare`` tiny, so the ratio alone overstates the cost; the bench
also times a raw nats-py request/reply round trip on an embedded nats-server (the floor of a
direct call) and reports the overhead as a share of it. Prints JSON.

    python bench/observability.py [--calls 20000] [--rounds 5] [--no-rtt]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

import bench_agents
import msgspec
import nats
from prometheus_client import CollectorRegistry

from bus.messages import Task
from bus.middleware.chain import build_chain
from bus.middleware.context import CallContext, Next
from bus.middleware.handler import handler_adapter
from bus.observability import tracing
from bus.observability.logs import configure_logging
from bus.observability.metrics import Metrics
from bus.observability.middleware import observe
from bus.observability.stats import LatencyWindow, percentile
from bus.server import NatsServer

agent = bench_agents.bare  # the same handler the request/reply benchmarks serve


def observed(handler: Next) -> Next:
    metrics = Metrics(CollectorRegistry())
    metrics.init_agent("bench")
    return build_chain([observe(metrics, window=LatencyWindow())], handler)


def contexts(count: int) -> list[CallContext]:
    spec = agent.default_handler
    assert spec is not None
    trace = tracing.new_traceparent()
    out = []
    for i in range(count):
        task = Task(id=f"run/0/{i}", agent="bench", input={"n": i, "text": "x" * 64},
                    run_id="run", step="0", trace=trace)  # fmt: skip
        out.append(CallContext(task, spec, agent="bench", version="1", mode="direct"))
    return out


async def timed(chain: Next, ctxs: list[CallContext]) -> float:
    start = time.perf_counter()
    for ctx in ctxs:
        await chain(ctx)
    return (time.perf_counter() - start) / len(ctxs) * 1e9


async def measure(calls: int, rounds: int, devnull: Any) -> dict[str, float]:
    spec = agent.default_handler
    assert spec is not None
    handler = handler_adapter(spec)
    # observe() keeps the logger configured at its first call: one chain per logging setup.
    built = {"bare": build_chain([], handler)}
    configure_logging("warning", "json", stream=devnull)
    built["metrics"] = observed(handler)
    await timed(built["metrics"], contexts(1000))
    configure_logging("info", "json", stream=devnull)
    built["metrics_logs"] = observed(handler)
    await timed(built["metrics_logs"], contexts(1000))
    best = dict.fromkeys(built, float("inf"))
    for _ in range(rounds):
        for name, chain in built.items():
            best[name] = min(best[name], await timed(chain, contexts(calls)))
    return best


async def raw_round_trip_us(count: int = 3000) -> float:
    """p50 of a raw nats-py request/reply on a local nats-server: a direct call's floor."""
    server = NatsServer().start()
    try:
        nc = await nats.connect(server.url)

        async def respond(msg: Any) -> None:
            await msg.respond(msg.data)

        await nc.subscribe("bench.rtt", cb=respond)
        payload = msgspec.msgpack.encode({"n": 1, "text": "x" * 64})
        times = []
        for _ in range(count):
            start = time.perf_counter()
            await nc.request("bench.rtt", payload, timeout=5)
            times.append((time.perf_counter() - start) * 1e6)
        await nc.close()
        return percentile(times, 0.5)
    finally:
        server.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-rtt", action="store_true", help="skip the nats round trip")
    args = parser.parse_args()
    with open(os.devnull, "w") as devnull:
        best = asyncio.run(measure(args.calls, args.rounds, devnull))
    bare = best["bare"]
    rtt = None if args.no_rtt else asyncio.run(raw_round_trip_us())
    result = {
        "calls": args.calls,
        "rounds": args.rounds,
        "otel_enabled": tracing.otel_enabled(),
        "ns_per_call": {k: round(v) for k, v in best.items()},
        "overhead_us_per_call": {
            k: round((v - bare) / 1000, 2) for k, v in best.items() if k != "bare"
        },
        "ratio_vs_bare": {k: round(v / bare, 2) for k, v in best.items() if k != "bare"},
    }
    if rtt is not None:
        result["raw_nats_round_trip_p50_us"] = round(rtt, 1)
        result["overhead_share_of_round_trip"] = {
            k: round((v - bare) / 1000 / rtt, 3) for k, v in best.items() if k != "bare"
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
