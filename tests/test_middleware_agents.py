"""Agents the middleware process tests run as `bus agent run` processes (no tests in here).

Effects go to files under $BUS_TEST_EFFECTS so a test can see calls across processes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from bus import Agent, RateLimit


def record(kind: str, line: str) -> None:
    root = os.environ.get("BUS_TEST_EFFECTS")
    if root:
        with open(Path(root) / f"{kind}.log", "a") as handle:
            handle.write(line + "\n")


limited = Agent(
    "limited", version="1", rate_limit=RateLimit(rate=20, per=1.0, burst=5, shared=True, lease=2)
)


@limited.handler
async def tick(n: int) -> int:
    record("tick", f"{time.time()} {os.getpid()}")
    return n
