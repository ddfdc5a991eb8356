"""Token bucket arithmetic, pure: the local bucket and the shared budget's lease step.

Both start full (``burst`` tokens) and refill at ``rate`` per ``per`` seconds up to ``burst``,
so over any interval of length ``t`` at most ``burst + rate * t / per`` tokens are handed out.
"""

from __future__ import annotations

import math

import msgspec

from bus.middleware.clock import Clock
from bus.policies import RateLimit

EPSILON = 1e-9  # float refill can land a hair under a whole token


class TokenBucketCore:
    """A token bucket on an injected monotonic clock.

    Args:
        rate: tokens added per ``per`` seconds.
        per: the period of ``rate``.
        burst: capacity (and the initial content).
        clock: monotonic seconds.
    """

    __slots__ = ("_at", "_clock", "burst", "per", "rate", "tokens")

    def __init__(self, rate: float, per: float, burst: int, clock: Clock) -> None:
        if rate <= 0 or per <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0, per > 0 and burst >= 1")
        self.rate = rate
        self.per = per
        self.burst = burst
        self._clock = clock
        self.tokens = float(burst)
        self._at = clock()

    def available(self) -> float:
        """Tokens in the bucket now (fractional)."""
        now = self._clock()
        if now > self._at:
            self.tokens = min(self.burst, self.tokens + (now - self._at) * self.rate / self.per)
            self._at = now
        return self.tokens

    def try_take(self, n: int = 1) -> bool:
        """Take ``n`` tokens if they are all there."""
        if self.available() + EPSILON >= n:
            self.tokens = max(self.tokens - n, 0.0)
            return True
        return False

    def take_up_to(self, n: int) -> int:
        """Take as many whole tokens as are there, at most ``n``; return how many."""
        taken = min(n, math.floor(self.available() + EPSILON))
        if taken > 0:
            self.tokens = max(self.tokens - taken, 0.0)
            return taken
        return 0

    def wait_time(self, n: int = 1) -> float:
        """Seconds until ``n`` tokens (at most ``burst``) will be there."""
        deficit = min(n, self.burst) - self.available()
        return max(deficit, 0.0) * self.per / self.rate

    def give_back(self, n: int) -> None:
        """Return tokens taken but not used (never above ``burst``)."""
        self.tokens = min(self.burst, self.available() + n)


class LimitRecord(msgspec.Struct, frozen=True):
    """The shared budget in KV ``bus_limits``: tokens left at epoch time ``at``."""

    tokens: float
    at: float


def lease(
    record: LimitRecord | None, now: float, want: int, policy: RateLimit
) -> tuple[LimitRecord, int, float]:
    """Take up to ``want`` whole tokens from the shared budget at epoch time ``now``.

    Returns the record to write back, the tokens taken and, when none could be taken, the
    seconds until one will be there. A missing record is a full bucket. ``at`` never moves
    backwards, so a replica whose clock lags cannot refill the budget twice.
    """
    if record is None:
        tokens, at = float(policy.burst), now
    else:
        elapsed = max(now - record.at, 0.0)
        tokens = min(float(policy.burst), record.tokens + elapsed * policy.rate / policy.per)
        at = max(record.at, now)
    taken = min(want, math.floor(tokens + EPSILON))
    if taken < 1:
        return LimitRecord(tokens, at), 0, (1.0 - tokens) * policy.per / policy.rate
    return LimitRecord(max(tokens - taken, 0.0), at), taken, 0.0
