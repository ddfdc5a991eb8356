"""Cancel the handlers of a run when the coordinator says it was cancelled."""

from __future__ import annotations

import asyncio


class CancelRegistry:
    """In-flight calls by run id, so that a cancelled run's handlers can be stopped.

    A call registers its task on entry; ``cancel(run_id)`` cancels those tasks and remembers
    that it did, so ``leave`` tells this cancellation (the caller acks the task) from any other
    (which propagates). A plain ``task.cancel()`` rather than an anyio cancel scope per call:
    the scope cost more than a fast handler.
    """

    __slots__ = ("_calls", "_cancelled")

    def __init__(self) -> None:
        self._calls: dict[str, set[asyncio.Task[object]]] = {}
        self._cancelled: set[asyncio.Task[object]] = set()

    def enter(self, run_id: str, task: asyncio.Task[object]) -> None:
        """``task`` now runs a call of ``run_id``."""
        calls = self._calls.get(run_id)
        if calls is None:
            calls = self._calls[run_id] = set()
        calls.add(task)

    def leave(self, run_id: str, task: asyncio.Task[object]) -> bool:
        """``task``'s call of ``run_id`` ended; returns whether ``cancel`` cancelled it (its
        cancellation is then settled: ``task.uncancel()``)."""
        calls = self._calls.get(run_id)
        if calls is not None:
            calls.discard(task)
            if not calls:
                del self._calls[run_id]
        if self._cancelled and task in self._cancelled:
            self._cancelled.discard(task)
            task.uncancel()
            return True
        return False

    def cancel(self, run_id: str) -> int:
        """Cancel every call of ``run_id``; returns how many were running."""
        calls = self._calls.pop(run_id, set())
        for task in calls:
            self._cancelled.add(task)
            task.cancel()
        return len(calls)
