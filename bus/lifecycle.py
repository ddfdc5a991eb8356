"""What the agent service and the coordinator share: serve until stopped, drain, stop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Self

import anyio
from anyio.abc import TaskStatus


class BackgroundService:
    """A long-running service: ``serve()`` until ``stop()``, then drain within a deadline.

    Subclasses implement ``serve`` (calling ``task_status.started()`` once live and setting
    ``self._stopped`` when done) and ``drain_timeout``.
    """

    def __init__(self) -> None:
        self._stop = anyio.Event()
        self._stopped = anyio.Event()

    @property
    def drain_timeout(self) -> float:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop taking work; in-flight work finishes, then the connection drains."""
        self._stop.set()

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        raise NotImplementedError

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Self]:
        """Serve in the background for the duration of the block."""
        async with anyio.create_task_group() as tg:
            await tg.start(self.serve)
            try:
                yield self
            finally:
                self.stop()
                with anyio.fail_after(self.drain_timeout + 5):
                    await self._stopped.wait()
