"""What metrics + logging cost on the hot path: one chain with and without ``observe``.

Every variant wraps the same real handler adapter (msgspec input conversion, an async handler,
output to plain data), so the difference is exactly the ``observe`` middleware:

- ``bare``: no observe.
- ``metrics``: observe with Prometheus metrics and the latency window; logging configured at
  ``warning``, so the per-call info line is filtered out (the cheapest production setting).
- ``metrics_logs``: observe with metrics and one JSON ``task finished`` line per call
  (the default ``info`` level), written to /dev/null.

Rounds alternate the variants and the best round of each counts, so machine noise hits all
alike. Prints JSON: ns per call, the overhead in µs per call and the ratio to ``bare``.

    python bench/observability.py [--calls 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

import msgspec
from prometheus_client import CollectorRegistry

from bus.agent import Agent
from bus.messages import Task
from bus.middleware.chain import build_chain
from bus.middleware.context import CallContext, Next
from bus.middleware.handler import handler_adapter
from bus.observability import tracing
from bus.observability.logs import configure_logging
from bus.observability.metrics import Metrics
from bus.observability.middleware import observe
from bus.observability.stats import LatencyWindow


class Ping(msgspec.Struct):
    n: int
    text: str = ""


class Pong(msgspec.Struct):
    n: int
    text: str = ""


agent = Agent("bench", version="1")


@agent.handler
async def pong(ping: Ping) -> Pong:
    return Pong(n=ping.n, text=ping.text)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with open(os.devnull, "w") as devnull:
        best = asyncio.run(measure(args.calls, args.rounds, devnull))
    bare = best["bare"]
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
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
