"""``AgentService``: one process serving one agent on NATS.

It connects, creates streams and buckets (idempotent), builds each handler's chain once, and
then, in one task group: the NATS micro service (discovery + direct requests), the durable
task consumer, one consumer per event handler, and the cancel listener. ``stop()`` (SIGTERM)
stops fetching, lets in-flight calls finish, and drains the connection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import msgspec
import structlog
from anyio.abc import TaskStatus

from bus import codec
from bus.agent import Agent, HandlerSpec
from bus.lifecycle import BackgroundService
from bus.middleware.defaults import Resources
from bus.middleware.idempotency import IdempotencyStore
from bus.runtime.cancel import CancelRegistry
from bus.runtime.deadletters import DeadLetters
from bus.runtime.direct import DirectServer
from bus.runtime.durable import DurableWorker
from bus.runtime.events import EventWorker
from bus.runtime.handlers import HandlerRuntime
from bus.runtime.instrumentation import Instrumentation
from bus.runtime.options import ServeOptions
from bus.settings import Settings
from bus.subjects import Subjects
from bus.transport.connection import connect
from bus.transport.consumer import ConsumerSpec, PullConsumer
from bus.transport.jetstream import ensure_all
from bus.transport.micro import EndpointDef, start_service
from bus.transport.wire import Inbound, Message, Wire

log = structlog.get_logger("bus.runtime")


class AgentService(BackgroundService):
    """Serve ``agent``: direct requests, durable tasks and events.

    Args:
        agent: what to serve.
        settings: how to reach NATS.
        options: process-level serving options.
        instrumentation: metrics registry and hooks (a fresh one by default).
    """

    def __init__(
        self,
        agent: Agent,
        settings: Settings,
        options: ServeOptions | None = None,
        *,
        instrumentation: Instrumentation | None = None,
    ) -> None:
        super().__init__()
        if not agent.handlers and not agent.event_handlers:
            raise ValueError(f"agent {agent.name!r} has no handlers")
        self.agent = agent
        self.settings = settings
        self.options = options or ServeOptions()
        self.subjects = Subjects(settings.prefix)
        self.instrumentation = instrumentation or Instrumentation.create()
        self.cancels = CancelRegistry()
        self.handlers: dict[str, HandlerRuntime] = {}
        self.durable: DurableWorker | None = None
        self._wire: Wire | None = None
        self.metrics_port: int | None = None
        self._consumers: list[PullConsumer] = []
        self._direct: DirectServer | None = None
        self._micro: Any = None

    @property
    def concurrency(self) -> int:
        return self.options.concurrency or self.agent.options.concurrency

    @property
    def ready(self) -> bool:
        """Connected and consuming (what ``/healthz`` reports)."""
        if self._wire is None or not self._wire.connected or self._stop.is_set():
            return False
        return self.durable is None or self.durable.consuming

    @property
    def drain_timeout(self) -> float:
        return self.options.drain_timeout

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until ``stop()``; ``task_status.started()`` once every subscription is live."""
        nc = await connect(self.settings, name=f"agent:{self.agent.name}")
        wire = self._wire = Wire(nc)
        try:
            buckets = await ensure_all(nc, self.subjects, self.settings.replicas)
            resources = Resources(
                cache=buckets["cache"], breakers=buckets["breakers"], limits=buckets["limits"]
            )
            dead_letters = DeadLetters(
                wire, self.subjects, self.agent.name, self.instrumentation.on_dead_letter
            )
            for spec in self.agent.handlers.values():
                self.handlers[spec.name] = self._runtime(spec, resources)
            async with anyio.create_task_group() as work:
                async with anyio.create_task_group() as loops:
                    await self._start_loops(loops, work, wire, buckets, dead_letters, resources)
                    task_status.started()
                    log.info("agent serving", agent=self.agent.name, version=self.agent.version)
                    await self._stop.wait()
                    loops.cancel_scope.cancel()
                await self._stop_intake()
                log.info("agent stopping: finishing in-flight work", agent=self.agent.name)
                work.cancel_scope.deadline = anyio.current_time() + self.options.drain_timeout
        finally:
            with anyio.CancelScope(shield=True):
                await wire.drain()
                self._stopped.set()
                log.info("agent stopped", agent=self.agent.name)

    async def _stop_intake(self) -> None:
        """No new work: leave the queue groups, stop fetching; queued requests still finish."""
        if self._micro is not None:
            await self._micro.stop()
        for consumer in self._consumers:
            await consumer.close()
        if self._direct is not None:
            await self._direct.close()
        if self.durable is not None:
            await self.durable.close()

    def _runtime(self, spec: HandlerSpec, resources: Resources) -> HandlerRuntime:
        outer = self.instrumentation.outer_middleware(self.agent.name, spec.name)
        runtime = HandlerRuntime(self.agent, spec, resources=resources, outer=outer)
        self.instrumentation.watch(spec.name, runtime.resilience)
        return runtime

    async def _start_loops(
        self,
        loops: Any,
        work: Any,
        wire: Wire,
        buckets: dict[str, Any],
        dead_letters: DeadLetters,
        resources: Resources,
    ) -> None:
        name = self.agent.name
        if self.handlers:
            direct = DirectServer(
                name,
                self.handlers,
                subject=self.subjects.agent(name),
                dead_letters=dead_letters,
                concurrency=self.concurrency,
                max_input_bytes=self.options.max_input_bytes,
            )
            direct.start(work)
            self._direct = direct
            await self._start_micro(wire, direct.on_request)
            if self.options.durable:
                self.durable = DurableWorker(
                    name,
                    self.handlers,
                    consumer=PullConsumer(wire.nc, self._task_consumer()),
                    wire=wire,
                    subjects=self.subjects,
                    idempotency=IdempotencyStore(buckets["cache"], owner=name),
                    dead_letters=dead_letters,
                    cancels=self.cancels,
                    concurrency=self.concurrency,
                    ack_wait=self.options.ack_wait,
                    fetch_wait=self.options.fetch_wait,
                )
                await self.durable.consumer.ensure()
                self._consumers.append(self.durable.consumer)
                self.durable.start(work)
                loops.start_soon(self.durable.run, self._stop)
        else:
            await self._start_micro(wire, None)
        for spec in self.agent.event_handlers.values():
            worker = EventWorker(
                self._runtime(spec, resources),
                consumer=PullConsumer(wire.nc, self._event_consumer(spec)),
                dead_letters=dead_letters,
                prefix=self.subjects.prefix,
                concurrency=self.concurrency,
                fetch_wait=self.options.fetch_wait,
            )
            await worker.consumer.ensure()
            self._consumers.append(worker.consumer)
            loops.start_soon(worker.run, work, self._stop)
        await wire.subscribe(self.subjects.cancel("*"), self._on_cancel)
        await wire.flush()
        if self.options.metrics_port is not None:
            await loops.start(
                self.instrumentation.serve_http, self.options.metrics_port, lambda: self.ready
            )

    def _task_consumer(self) -> ConsumerSpec:
        return ConsumerSpec(
            stream=self.subjects.tasks_stream,
            durable=self.agent.name,
            subjects=(self.subjects.task(self.agent.name),),
            ack_wait=self.options.ack_wait,
        )

    def _event_consumer(self, spec: HandlerSpec) -> ConsumerSpec:
        return ConsumerSpec(
            stream=self.subjects.events_stream,
            durable=f"{self.agent.name}-{spec.name}",
            subjects=tuple(self.subjects.event(t) for t in spec.event_types),
            ack_wait=self.options.ack_wait,
            new_only=True,
        )

    async def _on_cancel(self, msg: Inbound) -> None:
        run_id = msg.subject.rsplit(".", 1)[-1]
        cancelled = self.cancels.cancel(run_id)
        if cancelled:
            log.info("cancelled in-flight calls", run_id=run_id, calls=cancelled)

    async def _start_micro(self, wire: Wire, on_request: Callable[[Message], Any] | None) -> None:
        endpoints = []
        for spec in self.agent.handlers.values():
            if on_request is None:
                break
            endpoints.append(
                EndpointDef(
                    name=spec.name,
                    subject=self.subjects.agent(self.agent.name)
                    + ("" if spec is next(iter(self.agent.handlers.values())) else f".{spec.name}"),
                    queue_group=self.agent.name,
                    metadata=_schemas(spec),
                    handler=on_request,
                )
            )
        self._micro = await start_service(
            wire.nc,
            name=self.agent.name,
            version=_semver(self.agent.version),
            description=self.agent.description,
            metadata={
                "agent": self.agent.name,
                "prefix": self.subjects.prefix,
                "agent_version": self.agent.version,
                "task_subject": self.subjects.task(self.agent.name),
                "events": ",".join(
                    t for s in self.agent.event_handlers.values() for t in s.event_types
                ),
            },
            endpoints=endpoints,
            stats_data=self.instrumentation.stats_data,
        )


def _schemas(spec: HandlerSpec) -> dict[str, str]:
    def schema(tp: Any) -> str:
        try:
            return codec.encode_json(msgspec.json.schema(tp)).decode()
        except (TypeError, ValueError):
            return "{}"

    return {"input_schema": schema(spec.input_type), "output_schema": schema(spec.output_type)}


def _semver(version: str) -> str:
    parts = version.split(".")
    while len(parts) < 3:
        parts.append("0")
    candidate = ".".join(parts[:3])
    return candidate if all(p.isdigit() for p in candidate.split(".")) else "0.0.0"
