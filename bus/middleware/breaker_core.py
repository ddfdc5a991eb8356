"""The circuit breaker's state machine, pure: no I/O, time from an injected clock.

States ``closed`` → ``open`` → ``half_open`` → ``closed`` | ``open`` (resilience4j semantics)
over a count-based window of the latest outcomes. Every transition bumps ``generation``; a
permit carries the generation it was given in, so an outcome that arrives after the state moved
on (a call admitted before the breaker opened) is ignored instead of polluting the new state.

The state exports to and loads from a ``BreakerRecord`` (wall-clock times), which is how the
shared breaker keeps it in KV.
"""

from __future__ import annotations

from collections import deque
from typing import Literal

import msgspec

from bus.middleware.clock import Clock
from bus.policies import BreakerPolicy

State = Literal["closed", "open", "half_open"]

OK, FAILED, SLOW, SLOW_FAILED = 0, 1, 2, 3
"""Outcome codes: bit 0 = failure, bit 1 = slow."""

PROBE_EXPIRY = 30.0
"""Seconds after which half-open permits whose outcome never came (a replica died mid-probe)
are given out again, at the earliest ``open_for`` after half-open began."""


class BreakerRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A breaker's state as stored in KV ``bus_breakers`` (times are epoch seconds).

    ``window`` holds the outcome codes of the latest calls, oldest first, one digit each.
    """

    state: State = "closed"
    generation: int = 0
    opened_at: float = 0.0
    half_open_at: float = 0.0
    window: str = ""
    probes: int = 0
    probe_calls: int = 0
    probe_failures: int = 0
    probe_slow: int = 0
    opens: int = 0


class BreakerCore:
    """The breaker state machine.

    Use: ``gen = core.try_acquire()`` (``None``: refused); after the call either
    ``core.record(gen, code)`` with an outcome code, or ``core.release(gen)`` when the outcome
    says nothing about the dependency (so a half-open permit is not lost).
    """

    __slots__ = (
        "_clock",
        "_state",
        "generation",
        "half_open_at",
        "opened_at",
        "opens",
        "policy",
        "probe_calls",
        "probe_failures",
        "probe_slow",
        "probes",
        "window",
        "window_failures",
        "window_slow",
    )

    def __init__(self, policy: BreakerPolicy, clock: Clock) -> None:
        self.policy = policy
        self._clock = clock
        self._state: State = "closed"
        self.generation = 0
        self.opened_at = 0.0
        self.half_open_at = 0.0
        self.opens = 0
        self.window: deque[int] = deque()
        self.window_failures = 0
        self.window_slow = 0
        self.probes = 0
        self.probe_calls = 0
        self.probe_failures = 0
        self.probe_slow = 0

    @property
    def state(self) -> State:
        """The current state (an open breaker turns half-open once ``open_for`` has passed)."""
        self._advance(self._clock())
        return self._state

    def open_remaining(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when not open)."""
        if self.state != "open":
            return 0.0
        return max(self.opened_at + self.policy.open_for - self._clock(), 0.0)

    def permits_left(self) -> int:
        """Calls that would be admitted right now without waiting for outcomes."""
        state = self.state
        if state == "closed":
            return 1
        if state == "half_open":
            return max(self.policy.half_open_calls - self.probes, 0)
        return 0

    def try_acquire(self) -> int | None:
        """Admit a call: its generation token, or ``None`` when the breaker refuses it."""
        state = self.state
        if state == "closed":
            return self.generation
        if state == "half_open" and self.probes < self.policy.half_open_calls:
            self.probes += 1
            return self.generation
        return None

    def release(self, generation: int) -> None:
        """Give back a permit whose outcome is not counted (ignored kinds, cancellation)."""
        if generation == self.generation and self.state == "half_open" and self.probes > 0:
            self.probes -= 1

    def record(self, generation: int, code: int) -> None:
        """Count the outcome of a call admitted in ``generation`` (stale ones are ignored)."""
        state = self.state
        if generation != self.generation:
            return
        if state == "closed":
            self._push(code)
            calls = len(self.window)
            if calls >= min(self.policy.min_calls, self.policy.window) and self._tripped(
                self.window_failures, self.window_slow, calls
            ):
                self._open()
        elif state == "half_open":
            self.probe_calls += 1
            self.probe_failures += code & FAILED
            self.probe_slow += (code & SLOW) >> 1
            # Decide as soon as the outcome is certain: even all-successful remaining probes
            # could not bring the rate under the threshold.
            if self._tripped(self.probe_failures, self.probe_slow, self.policy.half_open_calls):
                self._open()
            elif self.probe_calls >= self.policy.half_open_calls:
                self._close()

    def counts(self) -> tuple[int, int, int]:
        """Calls, failures and slow calls in the closed-state window."""
        return len(self.window), self.window_failures, self.window_slow

    def export(self, wall_now: float) -> BreakerRecord:
        """The state as a record, with monotonic times turned into epoch seconds."""
        self._advance(self._clock())
        offset = wall_now - self._clock()
        return BreakerRecord(
            state=self._state,
            generation=self.generation,
            opened_at=self.opened_at + offset if self._state != "closed" else 0.0,
            half_open_at=self.half_open_at + offset if self._state == "half_open" else 0.0,
            window="".join(map(str, self.window)),
            probes=self.probes,
            probe_calls=self.probe_calls,
            probe_failures=self.probe_failures,
            probe_slow=self.probe_slow,
            opens=self.opens,
        )

    def load(self, record: BreakerRecord, wall_now: float) -> None:
        """Replace the state with ``record`` (epoch times turned into this clock's)."""
        offset = self._clock() - wall_now
        self._state = record.state
        self.generation = record.generation
        self.opened_at = record.opened_at + offset
        self.half_open_at = record.half_open_at + offset
        self.opens = record.opens
        self.window = deque(int(c) for c in record.window[-self.policy.window :])
        self.window_failures = sum(code & FAILED for code in self.window)
        self.window_slow = sum((code & SLOW) >> 1 for code in self.window)
        self.probes = record.probes
        self.probe_calls = record.probe_calls
        self.probe_failures = record.probe_failures
        self.probe_slow = record.probe_slow

    def _tripped(self, failures: int, slow: int, calls: int) -> bool:
        policy = self.policy
        if failures / calls >= policy.failure_rate:
            return True
        return policy.slow_call_duration is not None and slow / calls >= policy.slow_call_rate

    def _push(self, code: int) -> None:
        self.window.append(code)
        self.window_failures += code & FAILED
        self.window_slow += (code & SLOW) >> 1
        while len(self.window) > self.policy.window:
            old = self.window.popleft()
            self.window_failures -= old & FAILED
            self.window_slow -= (old & SLOW) >> 1

    def _advance(self, now: float) -> None:
        if self._state == "open" and now >= self.opened_at + self.policy.open_for:
            self._enter("half_open")
            self.half_open_at = self.opened_at + self.policy.open_for
        elif (
            self._state == "half_open"
            and self.probes > self.probe_calls
            and now >= self.half_open_at + max(self.policy.open_for, PROBE_EXPIRY)
        ):
            self.probes = self.probe_calls
            self.half_open_at = now

    def _open(self) -> None:
        self._enter("open")
        self.opened_at = self._clock()
        self.opens += 1

    def _close(self) -> None:
        self._enter("closed")

    def _enter(self, state: State) -> None:
        self._state = state
        self.generation += 1
        self.window.clear()
        self.window_failures = self.window_slow = 0
        self.probes = self.probe_calls = self.probe_failures = self.probe_slow = 0


def outcome_code(failed: bool, slow: bool) -> int:
    """The outcome code of a call."""
    return (FAILED if failed else OK) | (SLOW if slow else OK)
