"""Every change to a run goes through here: the pure interpreter under compare-and-set, then
the effects — the record is written first, the tasks it yields are published after.

A crash between the two leaves a record that names tasks nobody published; they are
published again (same ids, deduplicated) by the next recovery, or as soon as a duplicate
reply or a redelivered event for the run shows up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from bus.coordinator.dispatch import Dispatcher
from bus.coordinator.notices import run_changed, step_changes
from bus.coordinator.observer import CoordinatorObserver
from bus.coordinator.registry import TopologyRegistry
from bus.coordinator.store import KeyExistsError, RunStore
from bus.errors import InvalidTransitionError
from bus.messages import Reply, Task
from bus.observability.logs import debug_enabled
from bus.observability.tracing import new_traceparent, record_run_span
from bus.workflow import interpreter
from bus.workflow.records import RunRecord
from bus.workflow.states import RejectedTransitionError
from bus.workflow.topology import Topology

log = structlog.get_logger("bus.coordinator")


class UnknownRunError(InvalidTransitionError, LookupError):
    """No run with that id exists."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message, reason="unknown_run")


class RunLocks:
    """One lock per run id, held only while someone uses it: changes to one run are applied
    one at a time in this process (other replicas are kept honest by compare-and-set)."""

    __slots__ = ("_locks",)

    def __init__(self) -> None:
        self._locks: dict[str, _RunLock] = {}

    def hold(self, run_id: str) -> _RunLock:
        """``async with locks.hold(run_id): ...``"""
        lock = self._locks.get(run_id)
        if lock is None:
            lock = self._locks[run_id] = _RunLock(self._locks, run_id)
        return lock


class _RunLock:
    __slots__ = ("_lock", "_owner", "_run_id", "_users")

    def __init__(self, owner: dict[str, _RunLock], run_id: str) -> None:
        # asyncio's lock: taking a free one costs no running-loop lookup (anyio's takes two,
        # each a getpid() syscall on Python 3.11).
        self._lock = asyncio.Lock()
        self._owner = owner
        self._run_id = run_id
        self._users = 0

    async def __aenter__(self) -> None:
        self._users += 1
        try:
            await self._lock.acquire()
        except BaseException:
            self._leave()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._lock.release()
        self._leave()

    def _leave(self) -> None:
        self._users -= 1
        if not self._users:
            del self._owner[self._run_id]


class Engine:
    """Starts, advances, times out and cancels runs.

    Args:
        store: the run records.
        registry: topologies by name and version.
        dispatcher: publishes tasks and notices.
        observer: metrics hook.
        clock: epoch seconds (injected for tests).
        on_change: called with every record written (the timer's deadline index).
    """

    def __init__(
        self,
        store: RunStore,
        registry: TopologyRegistry,
        dispatcher: Dispatcher,
        observer: CoordinatorObserver,
        *,
        clock: Callable[[], float],
        on_change: Callable[[RunRecord], None],
    ) -> None:
        self.store = store
        self.registry = registry
        self._dispatcher = dispatcher
        self._observer = observer
        self._clock = clock
        self._on_change = on_change
        self._locks = RunLocks()

    async def start(
        self, topology: Topology, *, run_id: str, input: Any, trace: str = ""
    ) -> tuple[RunRecord, bool]:
        """Start a run (idempotent on ``run_id``); returns the record and whether it is new.

        An existing run gets its current tasks published again: the caller is retrying a
        start that may have crashed between the record and the tasks.
        """
        async with self._locks.hold(run_id):
            record, tasks = interpreter.start_run(
                topology,
                run_id=run_id,
                input=input,
                now=self._clock(),
                trace=trace or new_traceparent(),
            )
            try:
                stored = await self.store.create(record)
            except KeyExistsError:
                existing = await self.store.get(run_id)
                if existing is None:  # deleted meanwhile: nothing sensible to resume
                    raise UnknownRunError(f"run {run_id} vanished while starting") from None
                await self._republish(existing.record)
                return existing.record, False
            log.info("run started", run_id=run_id, topology=topology.name)
            await self._effects(None, stored.record, tasks)
            return stored.record, True

    async def reply(self, run_id: str, reply: Reply, *, sender: str) -> RunRecord:
        """Apply an agent's reply to its run.

        Raises:
            UnknownRunError: no such run.
            RejectedTransitionError: the reply does not fit the run (``.reason``); when it is
                a duplicate, the run's current tasks were published again first.
        """
        async with self._locks.hold(run_id):
            topology = await self._topology_of(run_id)

            def apply(record: RunRecord) -> tuple[RunRecord, list[Task]]:
                return interpreter.apply_reply(
                    topology, record, reply, sender=sender, now=self._clock()
                )

            try:
                changed = await self.store.change(run_id, apply)
            except RejectedTransitionError as exc:
                if exc.reason == "duplicate":
                    # Whoever applied the first copy may have died before publishing.
                    await self._republish_run(run_id)
                raise
            if changed is None:
                raise UnknownRunError(f"no run {run_id}")
            await self._effects(changed.before, changed.after.record, changed.result)
            return changed.after.record

    async def tick(self, run_id: str) -> RunRecord | None:
        """Let time pass for a run: due retries are dispatched, late steps time out."""
        async with self._locks.hold(run_id):
            try:
                topology = await self._topology_of(run_id)
            except UnknownRunError:
                return None
            now = self._clock()

            def apply(record: RunRecord) -> tuple[RunRecord, list[Task]]:
                return interpreter.apply_timeouts(topology, record, now=now)

            changed = await self.store.change(run_id, apply)
            if changed is None:
                return None
            if changed.after.record is changed.before:
                self._on_change(changed.before)
            else:
                await self._effects(changed.before, changed.after.record, changed.result)
            return changed.after.record

    async def cancel(self, run_id: str) -> RunRecord:
        """Cancel a run; agents are told to stop its handlers.

        Raises:
            UnknownRunError: no such run.
            RejectedTransitionError: the run already finished (reason ``terminal``).
        """
        async with self._locks.hold(run_id):

            def apply(record: RunRecord) -> tuple[RunRecord, list[Task]]:
                if record.terminal:
                    raise RejectedTransitionError(
                        f"run {run_id} already {record.state}", reason="terminal"
                    )
                return interpreter.cancel_run(record, now=self._clock()), []

            changed = await self.store.change(run_id, apply)
            if changed is None:
                raise UnknownRunError(f"no run {run_id}")
            log.info("run cancelled", run_id=run_id)
            await self._effects(changed.before, changed.after.record, [])
            return changed.after.record

    async def recover(self, record: RunRecord) -> None:
        """Resume an open run found in the bucket: publish its current tasks again."""
        self._on_change(record)
        await self._republish(record)

    async def _republish_run(self, run_id: str) -> None:
        stored = await self.store.get(run_id)
        if stored is not None:
            await self._republish(stored.record)

    async def _republish(self, record: RunRecord) -> None:
        if record.terminal:
            return
        topology = await self.registry.get(record.topology, record.topology_version)
        tasks = interpreter.current_tasks(topology, record, now=self._clock())
        if tasks:
            log.debug("tasks published again", run_id=record.run_id, tasks=len(tasks))
            await self._dispatcher.send(tasks, again=True)

    async def _topology_of(self, run_id: str) -> Topology:
        stored = await self.store.peek(run_id)
        if stored is None:
            raise UnknownRunError(f"no run {run_id}")
        record = stored.record
        return await self.registry.get(record.topology, record.topology_version)

    async def _effects(
        self, before: RunRecord | None, after: RunRecord, tasks: Sequence[Task]
    ) -> None:
        self._on_change(after)
        if tasks:
            await self._dispatcher.send(tasks)
        now = self._clock()
        steps = step_changes(before, after, now)
        if debug_enabled():
            for step in steps:
                log.debug(
                    "step transition",
                    run_id=after.run_id,
                    step=step.path,
                    agent=step.agent,
                    state=step.state,
                    attempt=step.attempts,
                )
        if not run_changed(before, after):
            await self._dispatcher.step_notices(steps)
            return
        # Watchers read "run running" before its first step, "run <end>" after its last.
        if not after.terminal:
            await self._dispatcher.run_notice(after)
        await self._dispatcher.step_notices(steps)
        seconds = (after.finished_at or now) - after.created_at if after.terminal else None
        self._observer.run_changed(after.topology, after.state, seconds)
        if after.terminal:
            await self._dispatcher.run_notice(after)
            log.info("run finished", run_id=after.run_id, state=after.state, seconds=seconds)
            record_run_span(
                topology=after.topology,
                run_id=after.run_id,
                traceparent=after.trace,
                state=after.state,
                started_at=after.created_at,
                finished_at=after.finished_at or now,
            )
        if after.state == "cancelled":
            await self._dispatcher.cancel(after.run_id)
