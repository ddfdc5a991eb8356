"""Time in runs: step deadlines and delayed step retries.

``DeadlineIndex`` knows, for every open run this process has seen, when the interpreter next
has work to do (``next_deadline``). It is fed by every record this process writes, by the
recovery scan at start-up and by a periodic rescan that picks up runs other replicas wrote
(so a dead replica's deadlines are still enforced). The timer loop ticks due runs; a tick is
an ordinary compare-and-set change, so replicas ticking the same run cannot double anything.
"""

from __future__ import annotations

import heapq
from collections.abc import Awaitable, Callable

import anyio
import structlog

from bus.errors import BusError
from bus.workflow.interpreter import next_deadline
from bus.workflow.records import RunRecord

log = structlog.get_logger("bus.coordinator")

RETRY_AFTER_ERROR = 1.0


class DeadlineIndex:
    """When each known open run next needs the timer."""

    __slots__ = ("_due", "_heap", "_wake")

    def __init__(self) -> None:
        self._due: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._wake = anyio.Event()

    def __len__(self) -> int:
        return len(self._due)

    def update(self, record: RunRecord) -> None:
        """The authoritative view of a run (this process just wrote or read it fresh)."""
        due = next_deadline(record)
        if due is None:
            self._due.pop(record.run_id, None)
        else:
            self._set(record.run_id, due)

    def offer(self, record: RunRecord) -> None:
        """A possibly stale view (a scan): only ever brings a deadline forward, because an
        early tick on fresh data is a harmless no-op while a missed one is a stuck run."""
        due = next_deadline(record)
        known = self._due.get(record.run_id)
        if due is not None and (known is None or due < known):
            self._set(record.run_id, due)

    def retry_later(self, run_id: str, at: float) -> None:
        if run_id not in self._due:
            self._set(run_id, at)

    def _set(self, run_id: str, due: float) -> None:
        earliest = self._heap[0][0] if self._heap else None
        self._due[run_id] = due
        heapq.heappush(self._heap, (due, run_id))
        if earliest is None or due < earliest:
            self._wake.set()

    def pop_due(self, now: float) -> list[str]:
        """The runs due by ``now``, removed from the index (a tick puts them back)."""
        due: list[str] = []
        while self._heap and self._heap[0][0] <= now:
            at, run_id = heapq.heappop(self._heap)
            if self._due.get(run_id) == at:
                del self._due[run_id]
                due.append(run_id)
        return due

    def next_at(self) -> float | None:
        while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    async def wait(self, seconds: float) -> None:
        """Sleep ``seconds`` or until an earlier deadline arrives."""
        with anyio.move_on_after(seconds):
            await self._wake.wait()
        self._wake = anyio.Event()


async def run_timer(
    index: DeadlineIndex,
    tick: Callable[[str], Awaitable[object]],
    *,
    clock: Callable[[], float],
    submit: Callable[[Callable[[str], Awaitable[None]], str], Awaitable[None]],
    max_sleep: float = 1.0,
) -> None:
    """Tick every run whose deadline passed, forever (cancel the caller's scope to stop).

    ``submit(job, run_id)`` runs a tick elsewhere (the coordinator's worker pool).
    """

    async def tick_one(run_id: str) -> None:
        try:
            await tick(run_id)
        except BusError as exc:
            log.warning("timer tick failed, will retry", run_id=run_id, error=str(exc))
            index.retry_later(run_id, clock() + RETRY_AFTER_ERROR)
        except Exception:
            log.exception("timer tick crashed, will retry", run_id=run_id)
            index.retry_later(run_id, clock() + RETRY_AFTER_ERROR)

    while True:
        now = clock()
        for run_id in index.pop_due(now):
            await submit(tick_one, run_id)
        nxt = index.next_at()
        delay = max_sleep if nxt is None else min(max(nxt - clock(), 0.0), max_sleep)
        await index.wait(delay)
