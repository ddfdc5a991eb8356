"""What the middleware chain costs: direct request/reply throughput with and without it.

Four responders on one embedded nats-server, each its own process, measured in one run:

- ``bare``: the same handler on plain nats-py (decode the input, call it, encode a Reply);
- ``nochain``: a bus agent whose chain is empty (the handler adapter alone), in the same
  runtime as the next two;
- ``default``: a bus agent with the default chain (context, logs and metrics, error boundary,
  retry, timeout);
- ``full``: a bus agent with every policy on (breaker, rate limit too; the dedup cache is left
  off because a hit would skip the handler).

Prints JSON with req/s at 64 in flight, p50 one at a time, and ratios. ``chain_adds_percent``
compares ``default`` with ``nochain``: the chain alone, the issue's target (<= 15%).
``bus_adds_percent_vs_bare`` compares ``default`` with ``bare``: the chain plus the runtime
(micro endpoint, worker pool, Task and Reply), which ``bench/request_reply.py`` also covers.

    python bench/middleware.py [--requests 20000] [--sequential 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from request_reply import best, measure, wait_for_responder

from bus.server import NatsServer
from bus.testing import settings_for, spawn_bus

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--sequential", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds; best counts")
    args = parser.parse_args()
    with NatsServer() as server:
        settings = settings_for(server)
        bare = subprocess.Popen(
            [sys.executable, str(HERE / "bench_agents.py"), server.url, "bench.bare", "bare"],
        )
        nochain = subprocess.Popen(
            [sys.executable, str(HERE / "bench_agents.py"), server.url, "nochain"],
        )
        agents = [
            spawn_bus(
                ["agent", "run", f"bench_agents:{ref}", "--direct-only"],
                settings,
                cwd=str(HERE),
                env={"BUS_LOG_LEVEL": "warning"},
            )
            for ref in ("echo", "full")
        ]
        subjects = {
            "bare": "bench.bare",
            "nochain": "bus.agent.bench-nochain",
            "default": "bus.agent.bench-echo",
            "full": "bus.agent.bench-full",
        }
        try:
            for subject in subjects.values():
                asyncio.run(wait_for_responder(server.url, subject))
            rounds: dict[str, list[dict[str, float]]] = {name: [] for name in subjects}
            for _ in range(args.rounds):  # alternate, so noise hits every side alike
                for name, subject in subjects.items():
                    rounds[name].append(asyncio.run(measure(server.url, subject, args)))
            results = {name: best(measured) for name, measured in rounds.items()}
        finally:
            for proc in (bare, nochain, *agents):
                proc.terminate()
                proc.wait(30)
    bare = results["bare"]["rps_64"]
    bus = results["nochain"]["rps_64"]
    default, full = results["default"]["rps_64"], results["full"]["rps_64"]
    report = {
        "benchmark": "middleware chain cost on direct request/reply",
        "cpus": os.cpu_count(),
        **results,
        "ratio_rps_64_default_to_nochain": round(default / bus, 3),
        "ratio_rps_64_full_to_nochain": round(full / bus, 3),
        "chain_adds_percent": round((bus / default - 1) * 100, 1),
        "full_chain_adds_percent": round((bus / full - 1) * 100, 1),
        "ratio_rps_64_default_to_bare": round(default / bare, 3),
        "bus_adds_percent_vs_bare": round((bare / default - 1) * 100, 1),
        "target": "the default chain adds <= 15% to request/reply (chain_adds_percent)",
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
