"""``Coordinator``: one replica of the workflow coordinator (``bus coordinator``).

It connects, creates streams and buckets (idempotent), registers the topologies of
``--topologies DIR``, resumes every open run (its current tasks are published again,
deduplicated), and then, in one task group: the durable reply consumer ``coordinator`` and
event consumer ``coordinator-events`` (each shared by every replica), the start and cancel
request handlers (queue group ``coordinator``), the timer and the rescan. No leader: every
change is a compare-and-set on the run's KV revision. ``stop()`` (SIGTERM) stops fetching,
lets in-flight messages finish and drains the connection.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import msgspec
import structlog
from anyio.abc import TaskGroup, TaskStatus

from bus.coordinator.control import QUEUE
from bus.coordinator.dispatch import Dispatcher
from bus.coordinator.engine import Engine
from bus.coordinator.inbox import Inbox
from bus.coordinator.observer import CoordinatorObserver, NoObserver
from bus.coordinator.registry import TopologyRegistry
from bus.coordinator.store import RunStore
from bus.coordinator.timers import DeadlineIndex, run_timer
from bus.errors import BusError
from bus.settings import Settings
from bus.subjects import Subjects
from bus.transport.connection import connect
from bus.transport.consumer import ConsumerSpec, Delivery, PullConsumer
from bus.transport.jetstream import ensure_all
from bus.transport.wire import Inbound, Wire
from bus.workflow.loader import load_directory

log = structlog.get_logger("bus.coordinator")


class CoordinatorOptions(msgspec.Struct, frozen=True, kw_only=True):
    """How one coordinator replica works.

    Attributes:
        topologies: a directory whose topology files are registered at start-up.
        concurrency: messages (replies, events, requests) handled at once.
        batch: most messages fetched per pull request.
        ack_wait: seconds before a reply or event held by a dead replica is redelivered.
        fetch_wait: seconds one pull request waits for messages.
        rescan_interval: seconds between scans of ``bus_runs`` for deadlines of runs other
            replicas wrote.
        drain_timeout: seconds in-flight messages get to finish on ``stop()``.
    """

    topologies: str | None = None
    concurrency: int = 256
    batch: int = 64
    ack_wait: float = 10.0
    fetch_wait: float = 1.0
    rescan_interval: float = 5.0
    drain_timeout: float = 10.0


class Coordinator:
    """One coordinator replica.

    Args:
        settings: how to reach NATS.
        options: see ``CoordinatorOptions``.
        observer: metrics hook (``bus.observability.metrics.Metrics`` fits).
        clock: epoch seconds; deadlines in run records use it.
    """

    def __init__(
        self,
        settings: Settings,
        options: CoordinatorOptions | None = None,
        *,
        observer: CoordinatorObserver | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.options = options or CoordinatorOptions()
        self.subjects = Subjects(settings.prefix)
        self.observer = observer or NoObserver()
        self.index = DeadlineIndex()
        self._clock = clock
        self._stop = anyio.Event()
        self._stopped = anyio.Event()
        self._wire: Wire | None = None
        self._consuming = False

    @property
    def ready(self) -> bool:
        """Connected and consuming (what ``/healthz`` reports)."""
        wire = self._wire
        return wire is not None and wire.connected and self._consuming and not self._stop.is_set()

    def stop(self) -> None:
        """Stop fetching; in-flight messages finish, then the connection drains."""
        self._stop.set()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Coordinator]:
        """Serve in the background for the duration of the block."""
        async with anyio.create_task_group() as tg:
            await tg.start(self.serve)
            try:
                yield self
            finally:
                self.stop()
                with anyio.fail_after(self.options.drain_timeout + 5):
                    await self._stopped.wait()

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until ``stop()``; ``task_status.started()`` once everything listens."""
        nc = await connect(self.settings, name="coordinator")
        wire = self._wire = Wire(nc)
        try:
            buckets = await ensure_all(nc, self.subjects, self.settings.replicas)
            registry = TopologyRegistry(buckets["topologies"], wire)
            if self.options.topologies:
                await registry.register_all(load_directory(self.options.topologies))
            await registry.load()
            engine = Engine(
                RunStore(buckets["runs"], wire),
                registry,
                Dispatcher(wire, self.subjects),
                self.observer,
                clock=self._clock,
                on_change=self.index.update,
            )
            inbox = Inbox(engine, self.subjects, self.observer)
            limiter = anyio.Semaphore(self.options.concurrency, fast_acquire=True)
            async with anyio.create_task_group() as work:
                async with anyio.create_task_group() as loops:
                    await self._recover(engine, limiter)
                    await self._start_loops(loops, work, wire, engine, inbox, limiter)
                    self._consuming = True
                    task_status.started()
                    log.info("coordinator serving", recovered=len(self.index))
                    await self._stop.wait()
                    self._consuming = False
                    loops.cancel_scope.cancel()
                log.info("coordinator stopping: finishing in-flight messages")
                work.cancel_scope.deadline = anyio.current_time() + self.options.drain_timeout
        finally:
            with anyio.CancelScope(shield=True):
                await wire.drain()
                self._stopped.set()
                log.info("coordinator stopped")

    async def _recover(self, engine: Engine, limiter: anyio.Semaphore) -> None:
        """Resume every open run: publish its current tasks again (deduplicated)."""
        async with anyio.create_task_group() as tg:
            async for stored in engine.store.scan():
                if stored.record.terminal:
                    continue
                await limiter.acquire()
                tg.start_soon(_release_after, limiter, engine.recover(stored.record))

    async def _start_loops(
        self,
        loops: TaskGroup,
        work: TaskGroup,
        wire: Wire,
        engine: Engine,
        inbox: Inbox,
        limiter: anyio.Semaphore,
    ) -> None:
        p, opts = self.subjects.prefix, self.options
        replies = PullConsumer(
            wire.nc,
            ConsumerSpec(
                stream=self.subjects.replies_stream,
                durable=self.subjects.coordinator_consumer,
                subjects=(f"{p}.reply.>",),
                ack_wait=opts.ack_wait,
            ),
        )
        events = PullConsumer(
            wire.nc,
            ConsumerSpec(
                stream=self.subjects.events_stream,
                durable=self.subjects.events_consumer,
                subjects=(f"{p}.event.>",),
                ack_wait=opts.ack_wait,
            ),
        )
        for consumer, handler in ((replies, inbox.on_reply), (events, inbox.on_event)):
            await consumer.ensure()
            loops.start_soon(self._consume, consumer, handler, work, limiter)

        def spawn(
            handler: Callable[[Inbound], Awaitable[None]],
        ) -> Callable[[Inbound], Awaitable[None]]:
            async def on_message(msg: Inbound) -> None:
                await limiter.acquire()
                work.start_soon(_release_after, limiter, handler(msg))

            return on_message

        await wire.subscribe(self.subjects.control("start"), spawn(inbox.on_start), queue=QUEUE)
        await wire.subscribe(self.subjects.control("cancel"), spawn(inbox.on_cancel), queue=QUEUE)
        await wire.flush()
        loops.start_soon(
            lambda: run_timer(
                self.index, engine.tick, clock=self._clock, work=work, limiter=limiter
            )
        )
        loops.start_soon(self._rescan, engine)
        loops.start_soon(engine.registry.follow)

    async def _consume(
        self,
        consumer: PullConsumer,
        handler: Callable[[Delivery], Awaitable[None]],
        work: TaskGroup,
        limiter: anyio.Semaphore,
    ) -> None:
        """Fetch as many messages as there are free slots; each is handled in ``work``."""
        while True:
            await limiter.acquire()
            held = 1
            while held < self.options.batch and limiter.value > 0:
                limiter.acquire_nowait()
                held += 1
            try:
                deliveries = await consumer.fetch(held, self.options.fetch_wait)
            except BaseException:
                for _ in range(held):
                    limiter.release()
                raise
            for _ in range(held - len(deliveries)):
                limiter.release()
            for delivery in deliveries:
                work.start_soon(_release_after, limiter, _guarded(handler, delivery))

    async def _rescan(self, engine: Engine) -> None:
        while True:
            await anyio.sleep(self.options.rescan_interval)
            try:
                async for stored in engine.store.scan():
                    if not stored.record.terminal:
                        self.index.offer(stored.record)
            except BusError as exc:
                log.warning("rescan of runs failed", error=str(exc))


async def _release_after(limiter: anyio.Semaphore, work: Awaitable[None]) -> None:
    try:
        await work
    finally:
        limiter.release()


async def _guarded(handler: Callable[[Delivery], Awaitable[None]], delivery: Delivery) -> None:
    try:
        await handler(delivery)
    except BusError as exc:
        log.warning("message left for redelivery", subject=delivery.subject, error=str(exc))
        await delivery.nak(1.0)
    except Exception:
        log.exception("message handling failed", subject=delivery.subject)
        await delivery.nak(1.0)
