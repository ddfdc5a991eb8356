"""Send what a state change yields: tasks to agents, notices to watchers, cancel orders.

Tasks are published to ``bus.task.<agent>`` (stream ``BUS_TASKS``) with ``Nats-Msg-Id`` = the
task id, so a repeated dispatch (after a crash, a lost race, a recovery) is dropped by the
stream inside its duplicate window and, after it, acked unrun by an agent that finds the
step's reply already stored (its idempotency record).
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from bus import codec
from bus.coordinator.notices import STEP, StepNotice
from bus.errors import TransientError
from bus.messages import REDISPATCH_HEADER, Task
from bus.subjects import Subjects
from bus.transport.publisher import Outbound
from bus.transport.wire import Wire
from bus.workflow.records import RunRecord

log = structlog.get_logger("bus.coordinator")


class Dispatcher:
    """Publishes tasks (durably) and notices (core NATS) for one coordinator."""

    __slots__ = ("_subjects", "_wire")

    def __init__(self, wire: Wire, subjects: Subjects) -> None:
        self._wire = wire
        self._subjects = subjects

    async def send(self, tasks: Sequence[Task], *, again: bool = False) -> None:
        """Publish every task and wait until the stream stored each (in parallel).

        ``again`` marks tasks published before under the same id (recovery, repair), so the
        agent checks its idempotency record before running them.

        Raises:
            TransientError: a task could not be stored; the caller must not ack what led to
                it, so the same tasks are dispatched again later.
        """
        await self._wire.persist_all([self._message(task, again) for task in tasks])

    def _message(self, task: Task, again: bool) -> Outbound:
        # No Content-Type: MessagePack is what a message without one holds, and every header
        # costs the client a regex match and an encode per publish.
        headers = {"Nats-Msg-Id": task.id}
        if again:
            headers[REDISPATCH_HEADER] = "1"
        if task.trace:
            headers["traceparent"] = task.trace
        return Outbound(self._subjects.task(task.agent), codec.encode(task), headers)

    async def run_notice(self, record: RunRecord) -> None:
        """Announce the run's state on ``bus.run.<run_id>.<state>`` with the whole record."""
        await self._notice(self._subjects.run(record.run_id, record.state), codec.encode(record))

    async def step_notices(self, notices: Sequence[StepNotice]) -> None:
        """Announce the step state changes of one change to a run, as one list, on
        ``bus.run.<run_id>.step``."""
        if notices:
            subject = self._subjects.run(notices[0].run_id, STEP)
            await self._notice(subject, codec.encode(list(notices)))

    async def cancel(self, run_id: str) -> None:
        """Tell agents to cancel the handlers they run for ``run_id``."""
        await self._notice(self._subjects.cancel(run_id), b"")

    async def _notice(self, subject: str, data: bytes) -> None:
        try:
            await self._wire.publish(subject, data)
        except TransientError as exc:
            # Watchers re-read the record; a lost notice costs them latency, not truth.
            log.warning("notice not published", subject=subject, error=str(exc))
