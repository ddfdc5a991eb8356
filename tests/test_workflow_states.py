"""The run and step transition tables: every legal move, every illegal one refused."""

from __future__ import annotations

from typing import get_args

import pytest

from bus.errors import InvalidTransitionError
from bus.workflow.states import (
    RUN_TERMINAL,
    RUN_TRANSITIONS,
    STEP_TERMINAL,
    STEP_TRANSITIONS,
    RejectedTransitionError,
    RunState,
    StepState,
    transition_run,
    transition_step,
)

RUN_STATES: tuple[RunState, ...] = get_args(RunState)
STEP_STATES: tuple[StepState, ...] = get_args(StepState)

LEGAL_RUN = {
    ("pending", "running"),
    ("pending", "cancelled"),
    ("running", "completed"),
    ("running", "failed"),
    ("running", "cancelled"),
}
LEGAL_STEP = {
    ("pending", "dispatched"),
    ("pending", "skipped"),
    ("dispatched", "succeeded"),
    ("dispatched", "failed"),
    ("dispatched", "retrying"),
    ("dispatched", "skipped"),
    ("retrying", "dispatched"),
    ("retrying", "failed"),
    ("retrying", "skipped"),
}


def test_tables_cover_every_state_and_match_the_design() -> None:
    assert set(RUN_TRANSITIONS) == set(RUN_STATES)
    assert set(STEP_TRANSITIONS) == set(STEP_STATES)
    assert {(a, b) for a, tos in RUN_TRANSITIONS.items() for b in tos} == LEGAL_RUN
    assert {(a, b) for a, tos in STEP_TRANSITIONS.items() for b in tos} == LEGAL_STEP
    assert {"completed", "failed", "cancelled"} == RUN_TERMINAL
    assert {"succeeded", "failed", "skipped"} == STEP_TERMINAL


def test_tables_are_frozen() -> None:
    with pytest.raises(TypeError):
        RUN_TRANSITIONS["completed"] = frozenset({"running"})  # type: ignore[index]
    with pytest.raises(TypeError):
        STEP_TRANSITIONS["failed"] = frozenset({"dispatched"})  # type: ignore[index]


@pytest.mark.parametrize(("state", "to"), sorted(LEGAL_RUN))
def test_legal_run_transitions(state: RunState, to: RunState) -> None:
    assert transition_run(state, to) == to


@pytest.mark.parametrize(("state", "to"), sorted(LEGAL_STEP))
def test_legal_step_transitions(state: StepState, to: StepState) -> None:
    assert transition_step(state, to) == to


@pytest.mark.parametrize(
    ("state", "to"),
    [(a, b) for a in RUN_STATES for b in RUN_STATES if (a, b) not in LEGAL_RUN],
)
def test_illegal_run_transitions_raise(state: RunState, to: RunState) -> None:
    with pytest.raises(InvalidTransitionError) as caught:
        transition_run(state, to)
    assert isinstance(caught.value, RejectedTransitionError)
    assert caught.value.reason == ("terminal" if state in RUN_TERMINAL else "illegal")
    assert state in str(caught.value)
    assert to in str(caught.value)


@pytest.mark.parametrize(
    ("state", "to"),
    [(a, b) for a in STEP_STATES for b in STEP_STATES if (a, b) not in LEGAL_STEP],
)
def test_illegal_step_transitions_raise(state: StepState, to: StepState) -> None:
    with pytest.raises(RejectedTransitionError) as caught:
        transition_step(state, to)
    assert caught.value.reason == "illegal"


@pytest.mark.parametrize("state", sorted(RUN_TERMINAL))
def test_terminal_runs_never_change(state: RunState) -> None:
    for to in RUN_STATES:
        with pytest.raises(RejectedTransitionError):
            transition_run(state, to)
