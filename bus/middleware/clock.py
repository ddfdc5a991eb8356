"""Time as a parameter: the stateful middleware take a clock and a sleep, tests pass their own.

Production passes ``time.monotonic`` and ``anyio.sleep``; ``ManualClock`` is the test double:
it never waits, its ``sleep`` moves time forward.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio.lowlevel

Clock = Callable[[], float]
"""Seconds on a monotonic scale (``time.monotonic``)."""

Sleep = Callable[[float], Awaitable[None]]
"""Wait this many seconds (``anyio.sleep``)."""


class ManualClock:
    """A monotonic clock moved by hand; ``await clock.sleep(s)`` advances it by ``s`` at once.

    Args:
        start: the initial reading.
    """

    __slots__ = ("now", "slept")

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``."""
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        """Record the delay, advance time by it and yield once to the event loop."""
        self.slept.append(seconds)
        self.now += max(seconds, 0.0)
        await anyio.lowlevel.checkpoint()
