"""The run record: everything the coordinator keeps about one workflow run.

One ``RunRecord`` per run is stored in KV ``bus_runs``; the interpreter turns a record into
the next one. ``msgspec.to_builtins(record)`` is the ``--json`` shape of ``bus status``:
``{run_id, topology, state, input, output, error, steps: {path: {agent, state, attempts,
...}}, created_at, finished_at, ...}``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from bus.messages import ErrorInfo
from bus.workflow.states import RUN_TERMINAL, RunState, StepState


class StepRecord(msgspec.Struct, frozen=True, kw_only=True):
    """The state of one step (a leaf ``Step`` of the topology) in a run.

    Attributes:
        agent: the agent of the current attempt (the fallback agent once it took over).
        state: see ``bus.workflow.states``.
        attempts: tasks dispatched so far; the fallback's attempts continue the numbering.
        output: the reply's output once ``succeeded``.
        error: the last failure (kept while ``retrying``; the final one once ``failed``).
        started_at: epoch seconds of the first dispatch.
        finished_at: epoch seconds when the step succeeded, failed or was skipped.
        deadline: epoch seconds when the current agent's time is up (``timeout`` counted from
            its first attempt, retries included); 0 = none.
        fallback: true once the fallback agent is running or ran.
        task_id: the current attempt's task id, ``run_id/path/attempt``.
        retry_at: while ``retrying``, epoch seconds when the next attempt is due; 0 = none.
        fallback_at: the attempt number the fallback agent started at (0 = never).
        seq: the order in which steps finished in this run (1, 2, ...; 0 = not finished);
            ``first`` merges and quorums are decided by it, never by clocks.
    """

    agent: str
    state: StepState = "pending"
    attempts: int = 0
    output: Any = None
    error: ErrorInfo | None = None
    started_at: float | None = None
    finished_at: float | None = None
    deadline: float = 0.0
    fallback: bool = False
    task_id: str = ""
    retry_at: float = 0.0
    fallback_at: int = 0
    seq: int = 0


class RunRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One workflow run.

    Attributes:
        run_id: unique id of the run.
        topology: the topology's name.
        topology_version: the content hash of the topology the run started with; the run
            keeps it to the end.
        state: see ``bus.workflow.states``.
        input: the run's input.
        output: the last node's output once ``completed``.
        error: why the run failed.
        steps: one record per step, by step path (``0``, ``1.then.0``, ...).
        created_at: epoch seconds when the run started.
        finished_at: epoch seconds when it reached a terminal state.
        trace: the W3C ``traceparent`` its tasks carry.
    """

    run_id: str
    topology: str
    topology_version: str = ""
    state: RunState = "pending"
    input: Any = None
    output: Any = None
    error: ErrorInfo | None = None
    steps: dict[str, StepRecord] = msgspec.field(default_factory=dict)
    created_at: float = 0.0
    finished_at: float | None = None
    trace: str = ""

    @property
    def terminal(self) -> bool:
        """True once the run completed, failed or was cancelled."""
        return self.state in RUN_TERMINAL


def next_seq(record: RunRecord) -> int:
    """The ``seq`` the next step to finish gets."""
    return 1 + max((s.seq for s in record.steps.values()), default=0)
