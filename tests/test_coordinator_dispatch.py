"""What the coordinator puts on a task message: dedup id, trace, and the re-publish mark."""

from __future__ import annotations

from nats.aio.client import Client as NATS

from bus.coordinator.dispatch import Dispatcher
from bus.messages import REDISPATCH_HEADER, Task
from bus.subjects import Subjects
from bus.transport.jetstream import ensure_all
from bus.transport.wire import Wire


async def test_republished_tasks_are_marked_and_fresh_ones_are_not(nc: NATS) -> None:
    await ensure_all(nc, Subjects())
    dispatcher = Dispatcher(Wire(nc), Subjects())
    fresh = Task(
        id="r/0/1", agent="a", run_id="r", step="0", trace="00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    )
    again = Task(id="r/1/1", agent="a", run_id="r", step="1")
    await dispatcher.send([fresh])
    await dispatcher.send([again], again=True)
    sub = await nc.jetstream().pull_subscribe("bus.task.a", stream="BUS_TASKS")
    first, second = await sub.fetch(2, timeout=5)
    assert first.headers is not None
    assert second.headers is not None
    assert first.headers["Nats-Msg-Id"] == "r/0/1"
    assert first.headers["traceparent"] == fresh.trace
    assert REDISPATCH_HEADER not in first.headers
    assert second.headers[REDISPATCH_HEADER] == "1"
