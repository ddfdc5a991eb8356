"""What watchers hear on ``bus.run.<run_id>.<state>`` and ``bus.run.<run_id>.step``.

A run's state change carries the whole ``RunRecord`` (MessagePack); the step state changes
one change to a run made (a step succeeded, the next one was dispatched) come as one list of
small ``StepNotice``. Core NATS drops messages for slow or absent watchers, so a watcher
treats notices as hints and the KV record as the truth.
"""

from __future__ import annotations

import msgspec

from bus.messages import ErrorInfo
from bus.workflow.records import RunRecord

STEP = "step"


class StepNotice(msgspec.Struct, frozen=True, omit_defaults=True):
    """One step changed state.

    Attributes:
        run_id: the run.
        path: the step path (``0``, ``1.then.0``, ...).
        agent: the agent of the current attempt.
        state: the step's new state.
        attempts: tasks dispatched so far.
        error: the last failure, when there is one.
        at: epoch seconds of the change.
    """

    run_id: str
    path: str
    agent: str
    state: str
    attempts: int = 0
    error: ErrorInfo | None = None
    at: float = 0.0


def step_changes(before: RunRecord | None, after: RunRecord, at: float) -> list[StepNotice]:
    """A notice for every step whose state or attempt count differs between two records."""
    old = before.steps if before is not None else {}
    notices = []
    for path, step in after.steps.items():
        prev = old.get(path)
        if prev is not None and prev.state == step.state and prev.attempts == step.attempts:
            continue
        if prev is None and step.state == "pending":
            continue
        notices.append(
            StepNotice(
                run_id=after.run_id,
                path=path,
                agent=step.agent,
                state=step.state,
                attempts=step.attempts,
                error=step.error,
                at=at,
            )
        )
    return notices


def run_changed(before: RunRecord | None, after: RunRecord) -> bool:
    """Whether the run's own state changed (a run notice is due)."""
    return before is None or before.state != after.state
