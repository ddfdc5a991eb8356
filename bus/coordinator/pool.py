"""A fixed set of worker tasks that run the coordinator's jobs, one message each.

Spawning a task per message costs about 40 µs in anyio; a job handed to the pool waits in
memory until a worker is free (``bus.workpool``). At most ``size`` jobs wait: a producer that
finds the queue full waits, which is the back-pressure on fetching.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio.abc import TaskStatus

from bus.workpool import WorkPool

Job = Callable[[Any], Awaitable[None]]


class WorkerPool:
    """``size`` workers running submitted ``job(arg)`` calls concurrently.

    Jobs must handle their own errors: one that raises ends the pool's task group.
    """

    __slots__ = ("_pool", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._pool: WorkPool[tuple[Job, Any]] = WorkPool(
            _run, workers=size, capacity=size, eager=True
        )

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the workers until ``close()`` and every submitted job is done."""
        async with anyio.create_task_group() as tg:
            self._pool.start(tg)
            task_status.started()

    async def submit(self, job: Job, arg: Any) -> None:
        """Hand ``job(arg)`` to the workers (waits while ``size`` jobs are already waiting)."""
        await self._pool.put((job, arg))

    def close(self) -> None:
        """Take no more jobs; workers finish what is queued and stop."""
        self._pool.close()


async def _run(item: tuple[Job, Any]) -> None:
    job, arg = item
    await job(arg)
