"""One coarse timer per event loop for every call's deadline.

``asyncio.timeout`` arms and cancels a timer per call, which on a fast handler costs more than
the rest of the chain together. Handler deadlines are seconds long, so one tick every
``TICK`` seconds, shared by all calls, cancels overdue calls late by at most a tick.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time

TICK = 0.05


class Watchdog:
    """Cancels the task of every registered call whose deadline has passed.

    Deadlines are ``time.monotonic()`` seconds (``loop.time()`` is the same clock behind a
    method call, paid per call); only the tick is scheduled on the loop.
    """

    __slots__ = ("_armed", "_calls", "_expired", "_ids", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._calls: dict[int, tuple[asyncio.Task[object], float]] = {}
        self._expired: set[int] = set()
        self._ids = itertools.count()
        self._armed = False

    def watch(self, task: asyncio.Task[object], seconds: float) -> int:
        """Cancel ``task`` if it is still watched ``seconds`` from now; returns the token for
        ``forget``."""
        token = next(self._ids)
        self._calls[token] = (task, time.monotonic() + seconds)
        if not self._armed:
            self._armed = True
            self._loop.call_later(TICK, self._tick)
        return token

    def forget(self, token: int) -> bool:
        """Stop watching the call of ``token``; returns whether this watchdog cancelled it."""
        del self._calls[token]
        if self._expired and token in self._expired:
            self._expired.discard(token)
            return True
        return False

    def _tick(self) -> None:
        now = time.monotonic()
        for token, (task, deadline) in list(self._calls.items()):
            if deadline <= now and token not in self._expired:
                self._expired.add(token)
                task.cancel()
        if self._calls:
            self._loop.call_later(TICK, self._tick)
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


class _LastSeen(threading.local):
    dog: Watchdog | None = None


_last_seen = _LastSeen()


def running_watchdog() -> tuple[asyncio.Task[object], Watchdog]:
    """The running task and its loop's watchdog, without a running-loop lookup.

    On Python 3.11 ``asyncio.get_running_loop()`` is a ``getpid()`` syscall, the dearest line
    of a fast call. The watchdog last used in this thread is tried first: a loop that is not
    running has no current task, so a stale guess is noticed and replaced.
    """
    dog = _last_seen.dog
    task = asyncio.current_task(dog._loop) if dog is not None else None
    if task is None or dog is None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("not called from an asyncio task")
        dog = _last_seen.dog = watchdog(loop)
    return task, dog


def running_task() -> asyncio.Task[object]:
    """The running task, found as cheaply as ``running_watchdog`` finds it."""
    return running_watchdog()[0]
