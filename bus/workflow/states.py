"""The workflow state machine: one frozen transition table for runs, one for steps.

::

    run:   pending ──> running ──> completed | failed | cancelled
              └──────────────────> cancelled

    step:  pending ──> dispatched ──> succeeded | failed | skipped
              │            │  ▲
              │            ▼  │
              │         retrying ──> failed | skipped
              └──> skipped

``retrying`` is the gap between two attempts of a step: a step-level retry waiting for its
backoff, or the switch to the step's fallback agent. ``skipped`` ends a step that is no longer
needed: the branch a conditional did not take, a parallel branch after its join, every open
step of a run that finished or was cancelled. Terminal states have no way out.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Literal

from bus.errors import InvalidTransitionError

RunState = Literal["pending", "running", "completed", "failed", "cancelled"]
StepState = Literal["pending", "dispatched", "retrying", "succeeded", "failed", "skipped"]
RejectReason = Literal[
    "unknown_step", "forged", "late", "duplicate", "terminal", "stale_attempt", "illegal"
]

RUN_TRANSITIONS: Final[Mapping[RunState, frozenset[RunState]]] = MappingProxyType(
    {
        "pending": frozenset({"running", "cancelled"}),
        "running": frozenset({"completed", "failed", "cancelled"}),
        "completed": frozenset(),
        "failed": frozenset(),
        "cancelled": frozenset(),
    }
)

STEP_TRANSITIONS: Final[Mapping[StepState, frozenset[StepState]]] = MappingProxyType(
    {
        "pending": frozenset({"dispatched", "skipped"}),
        "dispatched": frozenset({"succeeded", "failed", "retrying", "skipped"}),
        "retrying": frozenset({"dispatched", "failed", "skipped"}),
        "succeeded": frozenset(),
        "failed": frozenset(),
        "skipped": frozenset(),
    }
)

RUN_TERMINAL: Final = frozenset(s for s, nxt in RUN_TRANSITIONS.items() if not nxt)
STEP_TERMINAL: Final = frozenset(s for s, nxt in STEP_TRANSITIONS.items() if not nxt)
STEP_OPEN: Final = frozenset(STEP_TRANSITIONS) - STEP_TERMINAL


class RejectedTransitionError(InvalidTransitionError):
    """A state change or a reply the state machine refuses; nothing was applied.

    Attributes:
        reason: why, as a metrics label: ``unknown_step`` (no such step or task in the run),
            ``forged`` (the replying agent is not the one the attempt went to), ``late`` (the
            step is not waiting for this reply: never dispatched, skipped, timed out),
            ``duplicate`` (a second reply for the same attempt), ``terminal`` (the run has
            finished), ``stale_attempt`` (a reply for an earlier attempt of a step that is
            still open) or ``illegal`` (a transition outside the tables).
    """

    def __init__(self, message: str, *, reason: RejectReason = "illegal") -> None:
        super().__init__(message)
        self.reason: RejectReason = reason


def transition_run(state: RunState, to: RunState) -> RunState:
    """Return ``to`` if a run may go from ``state`` to it.

    Raises:
        RejectedTransitionError: the table forbids it (reason ``terminal`` when ``state`` is
            terminal, else ``illegal``).
    """
    if to not in RUN_TRANSITIONS[state]:
        reason: RejectReason = "terminal" if state in RUN_TERMINAL else "illegal"
        raise RejectedTransitionError(f"a run cannot go from {state} to {to}", reason=reason)
    return to


def transition_step(state: StepState, to: StepState) -> StepState:
    """Return ``to`` if a step may go from ``state`` to it.

    Raises:
        RejectedTransitionError: the table forbids it (reason ``illegal``).
    """
    if to not in STEP_TRANSITIONS[state]:
        raise RejectedTransitionError(f"a step cannot go from {state} to {to}")
    return to
