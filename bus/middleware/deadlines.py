"""One coarse timer per event loop for every call's deadline.

``asyncio.timeout`` arms and cancels a timer per call, which on a fast handler costs more than
the rest of the chain together. Handler deadlines are seconds long, so one tick every
``TICK`` seconds, shared by all calls, cancels overdue calls late by at most a tick.
"""

from __future__ import annotations

import asyncio
import itertools
import threading

TICK = 0.05


class Watchdog:
    """Cancels the task of every registered call whose deadline (loop time) has passed."""

    __slots__ = ("_armed", "_calls", "_expired", "_ids", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._calls: dict[int, tuple[asyncio.Task[object], float]] = {}
        self._expired: set[int] = set()
        self._ids = itertools.count()
        self._armed = False

    def watch(self, task: asyncio.Task[object], deadline: float) -> int:
        """Start watching ``task``; returns the token for ``expired`` and ``forget``."""
        token = next(self._ids)
        self._calls[token] = (task, deadline)
        if not self._armed:
            self._armed = True
            self._loop.call_at(self._loop.time() + TICK, self._tick)
        return token

    def expired(self, token: int) -> bool:
        """Whether this watchdog cancelled the call of ``token``."""
        return token in self._expired

    def forget(self, token: int) -> None:
        self._calls.pop(token, None)
        self._expired.discard(token)

    def _tick(self) -> None:
        now = self._loop.time()
        for token, (task, deadline) in list(self._calls.items()):
            if deadline <= now and token not in self._expired:
                self._expired.add(token)
                task.cancel()
        if self._calls:
            self._loop.call_at(now + TICK, self._tick)
        else:
            self._armed = False


_watchdogs: dict[asyncio.AbstractEventLoop, Watchdog] = {}


def watchdog(loop: asyncio.AbstractEventLoop | None = None) -> Watchdog:
    """The watchdog of ``loop`` (the running event loop by default)."""
    loop = loop or asyncio.get_running_loop()
    found = _watchdogs.get(loop)
    if found is None:
        for stale in [old for old in _watchdogs if old.is_closed()]:
            del _watchdogs[stale]
        found = _watchdogs[loop] = Watchdog(loop)
    return found


class _LoopCache(threading.local):
    loop: asyncio.AbstractEventLoop | None = None


_last_loop = _LoopCache()


def current_task() -> tuple[asyncio.Task[object], asyncio.AbstractEventLoop]:
    """The running task and its loop, without a running-loop lookup on the hot path.

    On Python 3.11 ``asyncio.get_running_loop()`` is a ``getpid()`` syscall, the dearest line
    of a fast call. The loop last seen in this thread is tried first: a loop that is not
    running has no current task, so a stale guess is noticed and replaced.
    """
    loop = _last_loop.loop
    task = asyncio.current_task(loop) if loop is not None else None
    if task is None:
        loop = _last_loop.loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("not called from an asyncio task")
    assert loop is not None
    return task, loop
