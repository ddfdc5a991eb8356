"""The worker pool behind direct requests: bounded concurrency, nothing dropped, back-pressure."""

from __future__ import annotations

import asyncio
import math
import time

import anyio
import pytest
from anyio.abc import TaskGroup

from bus.workpool import WorkPool


async def test_every_item_is_served_once_and_close_waits_for_the_queue() -> None:
    served: list[int] = []

    async def serve(item: int) -> None:
        if item % 3 == 0:
            await asyncio.sleep(0)  # some items suspend, most finish at once
        served.append(item)

    pool: WorkPool[int] = WorkPool(serve, workers=4, capacity=1000)
    async with anyio.create_task_group() as tg:
        pool.start(tg)
        for i in range(500):
            await pool.put(i)
        pool.close()
    assert sorted(served) == list(range(500))


async def test_no_more_than_workers_items_run_at_once() -> None:
    running = peak = 0
    release = asyncio.Event()

    async def serve(_: int) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1

    pool: WorkPool[int] = WorkPool(serve, workers=3, capacity=100)
    async with anyio.create_task_group() as tg:
        pool.start(tg)
        for i in range(10):
            await pool.put(i)
        while running < 3:
            await asyncio.sleep(0)
        for _ in range(20):  # give a fourth worker every chance to start
            await asyncio.sleep(0)
        assert running == peak == 3
        release.set()
        pool.close()
    assert running == 0


async def test_a_blocked_item_does_not_hold_up_the_next() -> None:
    first_blocked = asyncio.Event()
    second_done = asyncio.Event()

    async def serve(item: int) -> None:
        if item == 1:
            first_blocked.set()
            await second_done.wait()  # only finishes if another worker serves item 2
        else:
            second_done.set()

    pool: WorkPool[int] = WorkPool(serve, workers=2, capacity=10)
    async with anyio.create_task_group() as tg:
        pool.start(tg)
        for _ in range(5):  # both workers start and go idle
            await asyncio.sleep(0)
        await pool.put(1)  # wakes one worker; the second put wakes none

        await pool.put(2)
        with anyio.fail_after(5):
            await second_done.wait()
        pool.close()


async def test_put_waits_while_the_queue_is_full() -> None:
    release = asyncio.Event()
    taken = asyncio.Event()
    served: list[int] = []

    async def serve(item: int) -> None:
        taken.set()
        await release.wait()
        served.append(item)

    pool: WorkPool[int] = WorkPool(serve, workers=1, capacity=2)
    async with anyio.create_task_group() as tg:
        pool.start(tg)
        await pool.put(0)  # taken by the worker, which blocks
        await taken.wait()
        await pool.put(1)
        await pool.put(2)  # the queue now holds 2: full
        third = asyncio.ensure_future(pool.put(3))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not third.done()
        release.set()
        with anyio.fail_after(5):
            await third
        pool.close()
    assert served == [0, 1, 2, 3]


@pytest.mark.parametrize(("eager", "started_together"), [(True, 5), (False, 1)])
async def test_an_eager_pool_starts_a_burst_in_one_loop_iteration(
    eager: bool, started_together: int
) -> None:
    # Jobs that block at once (a compare-and-set, a publish awaiting its ack) should all reach
    # their first write in the same iteration, so the client sends the writes in one socket
    # write. A lazy pool starts them one iteration after another (the direct path's choice:
    # its fast handlers finish in one worker without waking the others).
    started = 0
    release = asyncio.Event()

    async def serve(_: int) -> None:
        nonlocal started
        started += 1
        await release.wait()

    pool: WorkPool[int] = WorkPool(serve, workers=5, capacity=10, eager=eager)
    async with anyio.create_task_group() as tg:
        await _start_idle_then_put(pool, tg, 5)
        await asyncio.sleep(0)  # one loop iteration
        assert started == started_together
        release.set()
        pool.close()
    assert started == 5


@pytest.mark.parametrize(("yield_after", "served_when_probe_ran"), [(0.0002, 1), (math.inf, 5)])
async def test_a_worker_lets_the_loop_run_after_its_budget(
    yield_after: float, served_when_probe_ran: int
) -> None:
    # Items that finish without suspending would otherwise keep everything else on the loop
    # (the connection's flusher, which writes the replies) waiting until the queue is empty.
    served = 0

    async def serve(_: int) -> None:
        nonlocal served
        busy_until = time.perf_counter() + 0.001  # works the CPU for 1 ms without suspending
        while time.perf_counter() < busy_until:
            pass
        served += 1

    async def probe() -> int:
        return served

    pool: WorkPool[int] = WorkPool(serve, workers=1, capacity=10, yield_after=yield_after)
    async with anyio.create_task_group() as tg:
        await _start_idle_then_put(pool, tg, 5)
        assert await asyncio.ensure_future(probe()) == served_when_probe_ran
        pool.close()
    assert served == 5


async def _start_idle_then_put(pool: WorkPool[int], tg: TaskGroup, count: int) -> None:
    """Start the pool's workers, let every one go idle, then put ``count`` items at once."""
    pool.start(tg)
    for _ in range(5):
        await asyncio.sleep(0)
    for i in range(count):
        await pool.put(i)
