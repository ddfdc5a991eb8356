"""What the middleware chain costs: direct request/reply throughput with and without it.

Three responders on one embedded nats-server, each its own process, measured in one run:

- ``bare``: the same handler on plain nats-py (decode the input, call it, encode a Reply);
- ``default``: a bus agent with the default chain (context, logs and metrics, error boundary,
  retry, timeout);
- ``full``: a bus agent with every policy on (breaker, rate limit too; the dedup cache is left
  off because a hit would skip the handler).

Prints JSON with req/s at 64 in flight, p50 one at a time, and ratios to ``bare``.

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
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; best counts")
    args = parser.parse_args()
    with NatsServer() as server:
        settings = settings_for(server)
        bare = subprocess.Popen(
            [sys.executable, str(HERE / "bench_agents.py"), server.url, "bench.bare", "bare"],
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
            for proc in (bare, *agents):
                proc.terminate()
                proc.wait(30)
    base = results["bare"]["rps_64"]
    report = {
        "benchmark": "middleware chain cost on direct request/reply",
        "cpus": os.cpu_count(),
        **results,
        "ratio_rps_64_default": round(results["default"]["rps_64"] / base, 3),
        "ratio_rps_64_full": round(results["full"]["rps_64"] / base, 3),
        "chain_adds_percent_default": round((base / results["default"]["rps_64"] - 1) * 100, 1),
        "target": "the chain adds <= 15% to request/reply (ratio >= 0.87)",
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
