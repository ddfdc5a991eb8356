"""The client side of workflows: start, inspect, follow and cancel runs; read dead letters.

>>> async with workflow_client(settings) as client:
...     run_id = await client.start_run("review", {"path": "."})
...     record = await client.wait_run(run_id, on_update=print)

Used by the CLI and by tests; each ``workflow_client`` opens its own connection.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import msgspec

from bus import codec
from bus.coordinator.control import CancelRequest, ControlAnswer, StartRequest
from bus.coordinator.engine import UnknownRunError
from bus.coordinator.notices import STEP, StepNotice
from bus.coordinator.registry import TopologyRegistry, UnknownTopologyError
from bus.deadletter import SUBJECT, DeadLetter, from_headers
from bus.errors import ConfigError, NoAgentError, PermanentError, TransientError
from bus.messages import REPLAY_HEADER
from bus.observability.tracing import new_traceparent
from bus.settings import Settings
from bus.subjects import Subjects
from bus.transport.connection import connect
from bus.transport.jetstream import ensure_bucket
from bus.transport.kv import Bucket, safe_key
from bus.transport.scan import kv_values, stream_messages
from bus.transport.wire import Inbound, Wire
from bus.workflow.loader import SUFFIXES, load_topology
from bus.workflow.records import RunRecord
from bus.workflow.topology import Topology

REPLAY = REPLAY_HEADER
POLL = 2.0
REQUEST_TIMEOUT = 10.0

Notice = StepNotice | RunRecord
"""What a watcher hears: a step changed, or the run changed (the whole record)."""


class CoordinatorUnavailableError(NoAgentError):
    """No coordinator answers on the control subjects."""


def is_topology_file(reference: str) -> bool:
    """Whether ``bus run REFERENCE`` names a file rather than a registered topology."""
    return Path(reference).suffix in SUFFIXES or Path(reference).is_file()


class WorkflowClient:
    """Workflow calls on one connection (see ``workflow_client``)."""

    def __init__(
        self, wire: Wire, subjects: Subjects, registry: TopologyRegistry, runs: Bucket
    ) -> None:
        self.wire = wire
        self.subjects = subjects
        self.registry = registry
        self._runs = runs

    # -- topologies ------------------------------------------------------------------------
    async def topology(self, reference: str | Topology) -> Topology:
        """A topology object, a file (registered first) or a registered name.

        Raises:
            TopologyError: the file is wrong.  UnknownTopologyError: no such name.
        """
        if isinstance(reference, Topology):
            topology = reference
        elif is_topology_file(reference):
            topology = load_topology(reference)
        else:
            return await self.registry.get(reference)
        await self.registry.register(topology)
        return topology

    # -- runs ------------------------------------------------------------------------------
    async def start_run(
        self,
        topology: str | Topology,
        input: Any = None,
        *,
        trace: str = "",
        run_id: str = "",
        timeout: float = REQUEST_TIMEOUT,
    ) -> str:
        """Ask a coordinator to start a run; returns its id.

        Raises:
            CoordinatorUnavailableError: no coordinator is running.
            UnknownTopologyError, TopologyError: the topology is not registered or is wrong.
        """
        found = await self.topology(topology)
        request = StartRequest(
            topology=found.name,
            version=found.version,
            input=input,
            trace=trace or new_traceparent(),
            run_id=run_id,
        )
        answer = await self._control("start", request, timeout)
        return answer.run_id

    async def cancel_run(self, run_id: str, *, timeout: float = REQUEST_TIMEOUT) -> RunRecord:
        """Cancel a run; returns its record once cancelled.

        Raises:
            UnknownRunError: no such run.  PermanentError: the run already finished.
        """
        await self._control("cancel", CancelRequest(run_id), timeout)
        return await self.get_run(run_id)

    async def get_run(self, run_id: str) -> RunRecord:
        """The run's record. Raises ``UnknownRunError``."""
        entry = await self._runs.get(run_id) if safe_key(run_id) == run_id else None
        if entry is None:
            raise UnknownRunError(f"no run {run_id!r} (see `bus runs`)")
        return codec.decode(entry.value, RunRecord)

    async def list_runs(self, state: str | None = None) -> list[RunRecord]:
        """Every run (optionally only those in ``state``), oldest first."""
        runs = []
        async for _, value, _ in kv_values(self.wire, self.subjects.bucket("runs")):
            with contextlib.suppress(PermanentError):
                record = codec.decode(value, RunRecord)
                if state is None or record.state == state:
                    runs.append(record)
        return sorted(runs, key=lambda r: (r.created_at, r.run_id))

    async def wait_run(
        self,
        run_id: str,
        *,
        on_update: Callable[[Notice], object] | None = None,
        timeout: float | None = None,
    ) -> RunRecord:
        """Wait until the run finishes; ``on_update`` hears every notice meanwhile.

        Subscribes before reading the record, so the finish cannot slip between the two;
        notices are hints (core NATS may drop them), so the record is re-read every few
        seconds too.

        Raises:
            UnknownRunError: no such run.  TimeoutError: ``timeout`` passed first.
        """
        with anyio.fail_after(timeout):
            async with self.notices(run_id) as notices:
                record = await self.get_run(run_id)
                if on_update is not None:
                    on_update(record)
                while not record.terminal:
                    with anyio.move_on_after(POLL) as waited:
                        notice = await notices.receive()
                        if on_update is not None:
                            on_update(notice)
                        if isinstance(notice, RunRecord):
                            record = notice
                    if waited.cancelled_caught:
                        record = await self.get_run(run_id)
                return record

    @asynccontextmanager
    async def notices(
        self, run_id: str | None = None
    ) -> AsyncIterator[anyio.abc.ObjectReceiveStream[Notice]]:
        """A stream of notices of one run (or of every run), live while the block runs."""
        send, receive = anyio.create_memory_object_stream[Notice](1024)

        async def on_message(msg: Inbound) -> None:
            kind = msg.subject.rsplit(".", 1)[-1]
            try:
                notices: list[Notice] = (
                    list(codec.decode(msg.data, list[StepNotice]))
                    if kind == STEP
                    else [codec.decode(msg.data, RunRecord)]
                )
            except PermanentError:
                return
            for notice in notices:
                with contextlib.suppress(anyio.WouldBlock):
                    send.send_nowait(notice)

        subject = self.subjects.run(run_id or "*", ">")
        sub = await self.wire.subscribe(subject, on_message)
        await self.wire.flush()
        try:
            yield receive
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            send.close()
            receive.close()

    # -- dead letters ----------------------------------------------------------------------
    async def dlq_list(self, agent: str | None = None) -> list[DeadLetter]:
        """Dead letters, oldest first (of one agent, or all)."""
        subject = self.subjects.dlq(agent) if agent else self.subjects.dlq(">")
        found = await stream_messages(self.wire, self.subjects.dlq_stream, subject)
        return [from_headers(m.seq, m.headers, len(m.data)) for m in found]

    async def dlq_replay(self, dead_letter_id: int) -> DeadLetter:
        """Publish dead letter ``id`` again to where it first went, then remove it.

        Raises:
            ConfigError: no dead letter has that id, or it does not say where it came from.
        """
        try:
            _, data, headers = await self.wire.stream_message(
                self.subjects.dlq_stream, dead_letter_id
            )
        except Exception:
            raise ConfigError(f"no dead letter {dead_letter_id} (see `bus dlq list`)") from None
        letter = from_headers(dead_letter_id, headers, len(data))
        target = headers.get(SUBJECT, "")
        if not target:
            raise ConfigError(f"dead letter {dead_letter_id} does not say where it came from")
        replay_headers = {REPLAY: str(dead_letter_id)}
        if "Content-Type" in headers:
            replay_headers["Content-Type"] = headers["Content-Type"]
        await self.wire.persist(
            target, data, msg_id=f"replay.{dead_letter_id}", headers=replay_headers
        )
        await self.wire.delete_stream_message(self.subjects.dlq_stream, dead_letter_id)
        return letter

    # -- internals -------------------------------------------------------------------------
    async def _control(self, verb: str, request: msgspec.Struct, timeout: float) -> ControlAnswer:
        try:
            body, headers = await self.wire.request(
                self.subjects.control(verb),
                codec.encode(request),
                headers={"Content-Type": codec.MSGPACK},
                timeout=timeout,
            )
        except NoAgentError:
            raise CoordinatorUnavailableError(
                "no coordinator is running (start one with `bus coordinator`)"
            ) from None
        answer = codec.decode(body, ControlAnswer, codec.content_type(headers))
        if not answer.error:
            return answer
        if answer.kind == "not_found":
            error_type: type[Exception] = (
                UnknownRunError if verb == "cancel" else UnknownTopologyError
            )
            raise error_type(answer.error)
        if answer.kind == "conflict":
            raise PermanentError(answer.error)
        if answer.kind == "invalid":
            raise ConfigError(answer.error)
        raise TransientError(answer.error)


@asynccontextmanager
async def workflow_client(settings: Settings) -> AsyncIterator[WorkflowClient]:
    """A ``WorkflowClient`` on a fresh connection, closed afterwards."""
    nc = await connect(settings, name="bus-cli")
    wire = Wire(nc)
    subjects = Subjects(settings.prefix)
    try:
        topologies = await ensure_bucket(wire.nc, subjects, "topologies", settings.replicas)
        runs = await ensure_bucket(wire.nc, subjects, "runs", settings.replicas)
        yield WorkflowClient(wire, subjects, TopologyRegistry(topologies, wire), runs)
    finally:
        await wire.close()
