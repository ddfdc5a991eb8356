"""The pure workflow interpreter: (topology, run record, reply) -> (new record, tasks).

No I/O and no clock: ``now`` (epoch seconds) is passed in. Records are frozen; every function
returns a new one, and a function that raises has changed nothing. Every state change goes
through ``transition_run`` / ``transition_step``.

Dispatch. A task id is ``f"{run_id}/{step_path}/{attempt}"``. Attempts are numbered per step
across agents: with ``retry.attempts=2`` and a fallback, attempts 1 and 2 go to the agent and
3 (and on, with retries) to the fallback, which takes the same input. The returned tasks are
to be published now; the coordinator never delays a task itself.

Time. Backoff between step-level retries is kept in the record: a failed attempt that may be
retried leaves the step ``retrying`` with ``retry_at``; a step's ``deadline`` is its
``timeout`` counted from its agent's first dispatch (the fallback gets a fresh one). The
coordinator calls ``apply_timeouts(topology, record, now=...)`` whenever ``next_deadline``
has passed: it dispatches the retries that are due and times out the steps whose deadline
passed (the agent's time is used up, so a timed-out step goes to its fallback or fails, never
to another retry with the same agent).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from msgspec.structs import replace

from bus.errors import TopologyError, is_retryable
from bus.messages import ErrorInfo, Reply, Task
from bus.workflow.derive import derive
from bus.workflow.records import RunRecord, StepRecord, next_seq
from bus.workflow.replies import STEP_TIMEOUT, check_reply
from bus.workflow.states import (
    STEP_OPEN,
    transition_run,
    transition_step,
)
from bus.workflow.topology import Step, Topology, step_index


def start_run(
    topology: Topology, *, run_id: str, input: Any, now: float, trace: str = ""
) -> tuple[RunRecord, list[Task]]:
    """A new run (``running``, or already finished when no step is needed) and its first
    tasks."""
    steps = {path: StepRecord(agent=step.agent) for path, step in step_index(topology).items()}
    record = RunRecord(
        run_id=run_id,
        topology=topology.name,
        topology_version=topology.version,
        input=input,
        steps=steps,
        created_at=now,
        trace=trace,
    )
    record = replace(record, state=transition_run(record.state, "running"))
    return _advance(topology, record, now)


def apply_reply(
    topology: Topology, record: RunRecord, reply: Reply, *, sender: str, now: float
) -> tuple[RunRecord, list[Task]]:
    """Apply an agent's reply; return the new record and the tasks it makes ready.

    Args:
        sender: the agent named by the reply's subject (trusted; the payload is not).

    Raises:
        RejectedTransitionError: the reply does not fit the record; ``.reason`` says why.
    """
    _same_version(topology, record)
    path = check_reply(topology, record, reply, sender)
    step, current = step_index(topology)[path], record.steps[path]
    if reply.ok:
        done = replace(
            current,
            state=transition_step(current.state, "succeeded"),
            output=reply.output,
            error=None,
            finished_at=now,
            seq=next_seq(record),
        )
    else:
        error = reply.error or ErrorInfo("permanent", "error reply without details")
        done = _after_failure(step, current, error, now, next_seq(record))
    return _advance(topology, replace(record, steps={**record.steps, path: done}), now)


def apply_timeouts(
    topology: Topology, record: RunRecord, *, now: float
) -> tuple[RunRecord, list[Task]]:
    """Let time pass: dispatch due retries and time out steps past their deadline.

    A finished run is returned unchanged with no tasks.
    """
    if record.terminal:
        return record, []
    _same_version(topology, record)
    steps, seq = dict(record.steps), next_seq(record)
    for path, current in record.steps.items():
        if current.state in STEP_OPEN and 0 < current.deadline <= now:
            step = step_index(topology)[path]
            reason = f"step {path} ({current.agent}) ran past its {step.timeout:g}s timeout"
            steps[path] = _fallback_or_fail(
                step, current, ErrorInfo("timeout", reason, STEP_TIMEOUT), now, seq
            )
            seq += 1
    return _advance(topology, replace(record, steps=steps), now)


def cancel_run(record: RunRecord, *, now: float) -> RunRecord:
    """The run ``cancelled``, its open steps ``skipped``.

    Raises:
        RejectedTransitionError: the run already finished (reason ``terminal``).
    """
    state = transition_run(record.state, "cancelled")
    return replace(
        record, state=state, steps=_skip_open(record.steps, record.steps, now), finished_at=now
    )


def next_deadline(record: RunRecord) -> float | None:
    """The earliest time ``apply_timeouts`` has work to do (None: nothing is waiting on time)."""
    if record.terminal:
        return None
    times = [s.deadline for s in record.steps.values() if s.state in STEP_OPEN and s.deadline]
    times += [s.retry_at for s in record.steps.values() if s.state == "retrying"]
    return min(times, default=None)


def current_tasks(topology: Topology, record: RunRecord, *, now: float) -> list[Task]:
    """The tasks of the attempts now dispatched, rebuilt with their original ids (to publish
    again after a crash; ``Nats-Msg-Id`` deduplicates them)."""
    if record.terminal:
        return []
    active = derive(topology, record.input, record.steps).active
    return [
        _task(record, path, step, active[path], now)
        for path, step in record.steps.items()
        if step.state == "dispatched" and path in active
    ]


def abandoned(before: RunRecord, after: RunRecord) -> list[str]:
    """Task ids that were in flight in ``before`` and are no longer wanted in ``after`` (the
    step was skipped: its run finished or was cancelled, or its parallel joined without it);
    the coordinator tells their agents to cancel the handlers."""
    return [
        old.task_id
        for path, old in before.steps.items()
        if old.state == "dispatched" and after.steps[path].state == "skipped"
    ]


# -- internals ---------------------------------------------------------------------------


def _same_version(topology: Topology, record: RunRecord) -> None:
    if topology.version and record.topology_version not in ("", topology.version):
        raise TopologyError(
            f"run {record.run_id} uses version {record.topology_version} of topology "
            f"{record.topology!r}, not {topology.version}"
        )


def _after_failure(
    step: Step, current: StepRecord, error: ErrorInfo, now: float, seq: int
) -> StepRecord:
    tries = current.attempts - current.fallback_at + 1 if current.fallback else current.attempts
    if step.retry is not None and is_retryable(error.kind) and tries < step.retry.attempts:
        delay = error.retry_after if error.retry_after is not None else step.retry.delay(tries)
        retry_at = now + max(0.0, delay)
        if not current.deadline or retry_at < current.deadline:
            state = transition_step(current.state, "retrying")
            return replace(current, state=state, error=error, retry_at=retry_at)
    return _fallback_or_fail(step, current, error, now, seq)


def _fallback_or_fail(
    step: Step, current: StepRecord, error: ErrorInfo, now: float, seq: int
) -> StepRecord:
    if step.fallback is not None and not current.fallback:
        waiting = current.state == "retrying"
        return replace(
            current,
            state=current.state if waiting else transition_step(current.state, "retrying"),
            error=error,
            fallback=True,
            fallback_at=current.attempts + 1,
            retry_at=now,
            deadline=0.0,
        )
    state = transition_step(current.state, "failed")
    return replace(current, state=state, error=error, finished_at=now, seq=seq, retry_at=0.0)


def _advance(topology: Topology, record: RunRecord, now: float) -> tuple[RunRecord, list[Task]]:
    """Derive where the run stands; dispatch what is ready, skip what is not needed."""
    outcome = derive(topology, record.input, record.steps)
    if outcome.status != "wait":
        state = transition_run(record.state, "completed" if outcome.status == "ok" else "failed")
        finished = replace(
            record,
            state=state,
            output=outcome.output,
            error=outcome.error,
            steps=_skip_open(record.steps, record.steps, now),
            finished_at=now,
        )
        return finished, []
    steps = _skip_open(record.steps, outcome.dead, now)
    tasks: list[Task] = []
    for path, value in outcome.active.items():
        current = steps[path]
        if current.state == "pending" or (current.state == "retrying" and current.retry_at <= now):
            steps[path] = _dispatch(step_index(topology)[path], current, record, path, now)
            tasks.append(_task(record, path, steps[path], value, now))
    return replace(record, steps=steps), tasks


def _skip_open(
    steps: dict[str, StepRecord], paths: Iterable[str], now: float
) -> dict[str, StepRecord]:
    out = dict(steps)
    for path in paths:
        current = steps[path]
        if current.state in STEP_OPEN:
            state = transition_step(current.state, "skipped")
            out[path] = replace(current, state=state, finished_at=now, retry_at=0.0)
    return out


def _dispatch(step: Step, current: StepRecord, run: RunRecord, path: str, now: float) -> StepRecord:
    attempt = current.attempts + 1
    fresh = attempt == 1 or (current.fallback and attempt == current.fallback_at)
    deadline = (now + step.timeout if step.timeout else 0.0) if fresh else current.deadline
    return replace(
        current,
        state=transition_step(current.state, "dispatched"),
        agent=(step.fallback or step.agent) if current.fallback else step.agent,
        attempts=attempt,
        task_id=f"{run.run_id}/{path}/{attempt}",
        deadline=deadline,
        started_at=now if current.started_at is None else current.started_at,
        retry_at=0.0,
    )


def _task(run: RunRecord, path: str, step: StepRecord, value: Any, now: float) -> Task:
    return Task(
        id=step.task_id,
        agent=step.agent,
        input=value,
        run_id=run.run_id,
        step=path,
        attempt=step.attempts,
        deadline=step.deadline,
        trace=run.trace,
        created_at=now,
    )
