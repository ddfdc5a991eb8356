"""Run a topology in memory with plain functions as agents: no NATS, no clock.

For tests of a topology's wiring (and of the interpreter itself)::

    record = simulate(topology, {"path": "."}, {"planner": plan, "linter": lint})
    assert record.state == "completed"

Each task is answered at once by the function of its agent: its return value is the output,
an exception becomes an error reply with its kind (``bus.messages.error_info``). A task for an
agent that has no function gets no reply, so the step runs into its timeout; a reply the
run rejects (a parallel branch after the join) is dropped. Time is
simulated: when nothing is left to answer, the clock jumps to ``next_deadline``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from bus.messages import Task, error_info, error_reply, ok_reply
from bus.workflow.interpreter import apply_reply, apply_timeouts, next_deadline, start_run
from bus.workflow.records import RunRecord
from bus.workflow.states import RejectedTransitionError
from bus.workflow.topology import Topology

AgentFunction = Callable[[Any], Any]


def simulate(
    topology: Topology,
    input: Any,
    agents: Mapping[str, AgentFunction],
    *,
    run_id: str = "sim",
    now: float = 0.0,
    max_events: int = 10_000,
) -> RunRecord:
    """Drive one run to its end and return the final record.

    Raises:
        RuntimeError: the run neither finished nor waited on time after ``max_events``
            replies and clock jumps (a run nobody answers and nothing times out).
    """
    record, tasks = start_run(topology, run_id=run_id, input=input, now=now)
    queue: deque[Task] = deque(tasks)
    for _ in range(max_events):
        if record.terminal:
            return record
        if queue:
            task = queue.popleft()
            function = agents.get(task.agent)
            if function is None:
                continue
            try:
                reply = ok_reply(task, function(task.input))
            except Exception as exc:
                reply = error_reply(task, error_info(exc))
            try:
                record, tasks = apply_reply(topology, record, reply, sender=task.agent, now=now)
            except RejectedTransitionError:
                continue  # a branch after its parallel joined: the coordinator drops it too
        else:
            due = next_deadline(record)
            if due is None:
                break
            now = max(now, due)
            record, tasks = apply_timeouts(topology, record, now=now)
        queue.extend(tasks)
    raise RuntimeError(f"run {run_id} of {topology.name!r} is stuck in state {record.state}")
