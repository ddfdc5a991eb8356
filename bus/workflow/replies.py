"""Which replies a run accepts: the one reply to the current attempt of an open step, sent
by the agent that attempt went to. Every other reply is rejected with a reason.

Checks, in order: the run is finished (``terminal``); the task id is not one of this run's
steps (``unknown_step``); the step was never dispatched (``late``); no such attempt was
dispatched (``unknown_step``); the sender is not the attempt's agent (``forged``); an earlier
attempt (``stale_attempt``, or ``late`` once the step is finished); the step is no longer
waiting: a second reply (``duplicate``) or one after a timeout or a skip (``late``).
"""

from __future__ import annotations

from typing import NoReturn

from bus.messages import Reply
from bus.workflow.records import RunRecord
from bus.workflow.states import STEP_TERMINAL, RejectedTransitionError, RejectReason
from bus.workflow.topology import Topology, step_index

STEP_TIMEOUT = "StepTimeout"  # ErrorInfo.type of a timeout the coordinator decided


def _reject(reason: RejectReason, record: RunRecord, reply: Reply, why: str) -> NoReturn:
    raise RejectedTransitionError(
        f"reply {reply.task_id!r} to run {record.run_id}: {why}", reason=reason
    )


def check_reply(topology: Topology, record: RunRecord, reply: Reply, sender: str) -> str:
    """The path of the step ``reply`` answers, if the record is waiting for it.

    Raises:
        RejectedTransitionError: the reply does not fit; ``.reason`` says why.
    """
    if record.terminal:
        _reject("terminal", record, reply, f"the run is {record.state}")
    prefix = f"{record.run_id}/"
    path, _, number = reply.task_id.removeprefix(prefix).rpartition("/")
    current = record.steps.get(path)
    if not reply.task_id.startswith(prefix) or current is None or not number.isdigit():
        _reject("unknown_step", record, reply, "no such step in the run")
    if current.state == "pending":
        _reject("late", record, reply, "the step was never dispatched")
    attempt = int(number)
    if not 1 <= attempt <= current.attempts:
        _reject("unknown_step", record, reply, f"the step has no attempt {attempt}")
    step = step_index(topology)[path]
    expected = step.fallback if current.fallback and attempt >= current.fallback_at else step.agent
    if sender != expected:
        _reject("forged", record, reply, f"sent by {sender!r}, the task went to {expected!r}")
    if attempt < current.attempts:
        reason: RejectReason = "late" if current.state in STEP_TERMINAL else "stale_attempt"
        _reject(reason, record, reply, f"attempt {attempt} was superseded")
    if current.state != "dispatched":
        timed_out = current.error is not None and current.error.type == STEP_TIMEOUT
        reason = "late" if timed_out or current.state == "skipped" else "duplicate"
        _reject(reason, record, reply, f"the step is already {current.state}")
    return path
