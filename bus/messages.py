"""The messages that cross the wire: tasks, replies, events and error details.

All are frozen msgspec Structs. New fields always get defaults and unknown fields are ignored,
so agents and coordinators can be upgraded one at a time.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any, Literal

import msgspec

from bus.errors import ErrorKind

ReplyStatus = Literal["ok", "error"]

# Headers of a task message that say it was published before under the same task id.
# An agent consults its idempotency record only for a redelivery or for a task marked
# REDISPATCH: the first publish of a task id is the only unmarked one (the coordinator marks
# every re-publish), which saves a read on every fresh task. REPLAY (`bus dlq replay`) asks
# for the task to run anew, record or not.
REDISPATCH_HEADER = "Bus-Redispatch"
REPLAY_HEADER = "Bus-Replay"


def now() -> float:
    """Wall-clock seconds since the epoch; every timestamp on the wire uses it."""
    return time.time()


_ID_PREFIX = os.urandom(10).hex()
# Counts from 2**48 so that hex() always gives "0x1" and 12 digits more: slicing those is
# cheaper than formatting to a width (2**48 ids would take a process years).
_ID_COUNTER = itertools.count(1 << 48)


def new_id() -> str:
    """A fresh unique identifier (32 hex characters): a random per-process prefix and a
    counter, because a random draw per id is a syscall on the hot path."""
    return _ID_PREFIX + hex(next(_ID_COUNTER))[3:]


class ErrorInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    """Why a call failed.

    Attributes:
        kind: the error class on the wire; retry and fallback decisions read only this.
        message: human-readable detail (for ``invalid_input`` it names the field).
        type: the Python exception type that was raised, for debugging.
        retry_after: seconds the failing dependency asked us to wait (transient errors only).
    """

    kind: ErrorKind
    message: str = ""
    type: str = ""
    retry_after: float | None = None


class Task(msgspec.Struct, frozen=True, omit_defaults=True):
    """One unit of work for one agent.

    Attributes:
        id: deterministic ``run_id/step_path/attempt`` for workflow tasks (the idempotency
            key); a random id for ad-hoc tasks.
        run_id: the workflow run this task belongs to ("" for a direct call).
        step: the step path inside the run's topology (``0``, ``1.then.0``, ...).
        agent: the agent that must handle it.
        input: the handler's input, as plain data (validated against the handler's type).
        attempt: 1 for the first try; the coordinator bumps it for a step-level retry.
        deadline: epoch seconds after which the work is useless (0: none).
        trace: W3C ``traceparent`` of the run.
        created_at: epoch seconds when the task was made.
        handler: which of the agent's handlers to call ("" for its default one).
    """

    id: str
    agent: str
    input: Any = None
    run_id: str = ""
    step: str = ""
    attempt: int = 1
    deadline: float = 0.0
    trace: str = ""
    created_at: float = msgspec.field(default_factory=time.time)  # ``now`` without its frame
    handler: str = ""


class Reply(msgspec.Struct, frozen=True, omit_defaults=True):
    """The outcome of one task.

    Attributes:
        task_id: the id of the task answered.
        status: ``ok`` with ``output``, or ``error`` with ``error``.
        output: the handler's result as plain data.
        error: why it failed, when ``status`` is ``error``.
        duration_ms: time spent in the handler chain.
        cached: true when the output came from the dedup cache.
    """

    task_id: str
    status: ReplyStatus
    run_id: str = ""
    step: str = ""
    agent: str = ""
    output: Any = None
    error: ErrorInfo | None = None
    duration_ms: float = 0.0
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class Event(msgspec.Struct, frozen=True, omit_defaults=True):
    """A published event, with CloudEvents attribute names.

    Attributes:
        type: the event type (``code.pushed``); it is also the subject suffix.
        data: the payload.
        id: unique id; the stream deduplicates on it.
        source: who published it.
        time: RFC 3339 timestamp.
        specversion: CloudEvents spec version.
        traceparent: W3C trace context of the publisher.
    """

    type: str
    data: Any = None
    id: str = msgspec.field(default_factory=new_id)
    source: str = "bus"
    time: str = ""
    specversion: str = "1.0"
    traceparent: str = ""


def ok_reply(task: Task, output: Any, *, duration_ms: float = 0.0, cached: bool = False) -> Reply:
    """The successful reply to ``task``."""
    return Reply(
        task_id=task.id,
        status="ok",
        run_id=task.run_id,
        step=task.step,
        agent=task.agent,
        output=output,
        duration_ms=duration_ms,
        cached=cached,
    )


def error_reply(task: Task, error: ErrorInfo, *, duration_ms: float = 0.0) -> Reply:
    """The failed reply to ``task``."""
    return Reply(
        task_id=task.id,
        status="error",
        run_id=task.run_id,
        step=task.step,
        agent=task.agent,
        error=error,
        duration_ms=duration_ms,
    )


def error_info(exc: BaseException) -> ErrorInfo:
    """Describe an exception for the wire.

    Our errors carry their kind; a builtin ``TimeoutError`` is a timeout and a
    ``ConnectionError`` transient; any other exception (a bug, a ``KeyError``) is permanent,
    because retrying the same input will not fix it.
    """
    kind: ErrorKind = getattr(exc, "kind", "permanent")
    if not hasattr(exc, "kind"):
        if isinstance(exc, TimeoutError):
            kind = "timeout"
        elif isinstance(exc, ConnectionError):
            kind = "transient"
    return ErrorInfo(
        kind=kind,
        message=str(exc) or type(exc).__name__,
        type=type(exc).__name__,
        retry_after=getattr(exc, "retry_after", None),
    )
