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
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import anyio
import msgspec
import structlog
from anyio.abc import TaskGroup, TaskStatus

from bus.coordinator.control import QUEUE
from bus.coordinator.dispatch import Dispatcher
from bus.coordinator.engine import Engine
from bus.coordinator.inbox import Inbox
from bus.coordinator.observer import CoordinatorObserver, NoObserver
from bus.coordinator.pool import Job, WorkerPool
from bus.coordinator.registry import TopologyRegistry
from bus.coordinator.store import RunStore
from bus.coordinator.timers import DeadlineIndex, run_timer
from bus.errors import BusError
from bus.lifecycle import BackgroundService
from bus.settings import Settings
from bus.subjects import Subjects
from bus.transport.connection import connect
from bus.transport.consumer import ConsumerSpec, Delivery, PullConsumer
from bus.transport.jetstream import ensure_all
from bus.transport.wire import Inbound, Wire
from bus.workflow.loader import load_directory
from bus.workflow.records import RunRecord

log = structlog.get_logger("bus.coordinator")

RECOVERY_TRIES = 5


class CoordinatorOptions(msgspec.Struct, frozen=True, kw_only=True):
    """How one coordinator replica works.

    Attributes:
        topologies: a directory whose topology files are registered at start-up.
        concurrency: messages (replies, events, requests, timer ticks) handled at once.
        batch: most messages fetched per pull request.
        ack_wait: seconds before a reply or event held by a dead replica is redelivered.
        fetch_wait: seconds one pull request waits for messages.
        rescan_interval: seconds between scans of ``bus_runs`` for deadlines of runs other
            replicas wrote.
        drain_timeout: seconds in-flight messages get to finish on ``stop()``.
        retention: seconds a finished run's record is kept in ``bus_runs`` (per-key TTL), so
            the bucket does not grow forever; ``None`` keeps every record.
    """

    topologies: str | None = None
    concurrency: int = 256
    batch: int = 64
    ack_wait: float = 10.0
    fetch_wait: float = 1.0
    rescan_interval: float = 10.0
    drain_timeout: float = 10.0
    retention: float | None = 7 * 24 * 3600.0


class Coordinator(BackgroundService):
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
        super().__init__()
        self.settings = settings
        self.options = options or CoordinatorOptions()
        self.subjects = Subjects(settings.prefix)
        self.observer = observer or NoObserver()
        self.index = DeadlineIndex()
        self._clock = clock
        self._wire: Wire | None = None
        self._consuming = False

    @property
    def ready(self) -> bool:
        """Connected and consuming (what ``/healthz`` reports)."""
        wire = self._wire
        return wire is not None and wire.connected and self._consuming and not self._stop.is_set()

    @property
    def drain_timeout(self) -> float:
        return self.options.drain_timeout

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until ``stop()``; ``task_status.started()`` once everything listens."""
        nc = await connect(self.settings, name="coordinator")
        wire = self._wire = Wire(nc)
        try:
            buckets = await ensure_all(nc, self.subjects, self.settings.replicas, manage=True)
            registry = TopologyRegistry(buckets["topologies"], wire)
            if self.options.topologies:
                await registry.register_all(load_directory(self.options.topologies))
            await registry.load()
            engine = Engine(
                RunStore(buckets["runs"], wire, retention=self.options.retention),
                registry,
                Dispatcher(wire, self.subjects),
                self.observer,
                clock=self._clock,
                on_change=self.index.update,
            )
            inbox = Inbox(engine, self.subjects, self.observer)
            pool = WorkerPool(self.options.concurrency)
            async with anyio.create_task_group() as work:
                await work.start(pool.run)
                async with anyio.create_task_group() as loops:
                    subs = await self._start_loops(loops, wire, engine, inbox, pool)
                    recovered = await self._recover(engine, pool)
                    self._consuming = True
                    task_status.started()
                    log.info("coordinator serving", recovered=recovered)
                    await self._stop.wait()
                    self._consuming = False
                    for sub in subs:
                        await sub.unsubscribe()
                    loops.cancel_scope.cancel()
                log.info("coordinator stopping: finishing in-flight messages")
                pool.close()
                work.cancel_scope.deadline = anyio.current_time() + self.options.drain_timeout
        finally:
            with anyio.CancelScope(shield=True):
                await wire.drain()
                self._stopped.set()
                log.info("coordinator stopped")

    async def _recover(self, engine: Engine, pool: WorkerPool) -> int:
        """Resume every open run: publish its current tasks again (deduplicated)."""

        async def recover(record: RunRecord) -> None:
            for attempt in range(RECOVERY_TRIES):
                try:
                    await engine.recover(record)
                    return
                except BusError as exc:
                    log.warning("run not resumed yet", run_id=record.run_id, error=str(exc))
                    await anyio.sleep(attempt + 1)
                except Exception:
                    log.exception("run not resumed", run_id=record.run_id)
                    return

        count = 0
        async for stored in engine.store.scan(open_only=True):
            count += 1
            await pool.submit(recover, stored.record)
        return count

    async def _start_loops(
        self, loops: TaskGroup, wire: Wire, engine: Engine, inbox: Inbox, pool: WorkerPool
    ) -> list[Any]:
        p, opts = self.subjects.prefix, self.options
        consumers = (
            (
                self.subjects.replies_stream,
                self.subjects.coordinator_consumer,
                "reply",
                inbox.on_reply,
            ),
            (self.subjects.events_stream, self.subjects.events_consumer, "event", inbox.on_event),
        )
        for stream, durable, kind, handler in consumers:
            spec = ConsumerSpec(
                stream=stream, durable=durable, subjects=(f"{p}.{kind}.>",), ack_wait=opts.ack_wait
            )
            consumer = PullConsumer(wire.nc, spec)
            await consumer.ensure()
            loops.start_soon(self._consume, consumer, partial(_guarded, handler), pool)

        def via_pool(
            handler: Callable[[Inbound], Awaitable[None]],
        ) -> Callable[[Inbound], Awaitable[None]]:
            async def on_message(msg: Inbound) -> None:
                await pool.submit(handler, msg)

            return on_message

        subs = [
            await wire.subscribe(self.subjects.control(verb), via_pool(handler), queue=QUEUE)
            for verb, handler in (("start", inbox.on_start), ("cancel", inbox.on_cancel))
        ]
        await wire.flush()
        loops.start_soon(
            lambda: run_timer(self.index, engine.tick, clock=self._clock, submit=pool.submit)
        )
        loops.start_soon(self._rescan, engine)
        loops.start_soon(engine.registry.follow)
        return subs

    async def _consume(self, consumer: PullConsumer, job: Job, pool: WorkerPool) -> None:
        """Fetch and hand each message to a free worker (fetching waits while none is)."""
        while True:
            for delivery in await consumer.fetch(self.options.batch, self.options.fetch_wait):
                await pool.submit(job, delivery)

    async def _rescan(self, engine: Engine) -> None:
        while True:
            await anyio.sleep(self.options.rescan_interval)
            try:
                async for stored in engine.store.scan(open_only=True):
                    self.index.offer(stored.record)
            except BusError as exc:
                log.warning("rescan of runs failed", error=str(exc))


async def _guarded(handler: Callable[[Delivery], Awaitable[None]], delivery: Delivery) -> None:
    try:
        await handler(delivery)
    except BusError as exc:
        log.warning("message left for redelivery", subject=delivery.subject, error=str(exc))
        await delivery.nak(1.0)
    except Exception:
        log.exception("message handling failed", subject=delivery.subject)
        await delivery.nak(1.0)
