"""Names of every subject, stream, consumer and bucket, under one configurable prefix.

Several buses can share one NATS by choosing different prefixes; the default ``bus`` gives the
names of DESIGN.md (``bus.task.<agent>``, stream ``BUS_TASKS``, bucket ``bus_runs``, ...).
"""

from __future__ import annotations

import hashlib
import re

import msgspec

_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")
_TYPE = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


def check_agent_name(name: str) -> str:
    """Return ``name`` if it is usable as one subject token, else raise ``ValueError``."""
    if not _TOKEN.match(name):
        raise ValueError(
            f"agent name {name!r} must be letters, digits, '-' or '_' (one NATS subject token)"
        )
    return name


def check_event_type(event_type: str) -> str:
    """Return ``event_type`` if it is a dotted name without wildcards, else raise ``ValueError``."""
    if not _TYPE.match(event_type):
        raise ValueError(f"event type {event_type!r} must be dotted tokens like 'code.pushed'")
    return event_type


def task_token(task_id: str) -> str:
    """A task id as one subject token (task ids hold ``/`` and step names anything)."""
    return hashlib.blake2b(task_id.encode(), digest_size=10).hexdigest()


class Subjects(msgspec.Struct, frozen=True):
    """Every NATS name the bus uses, derived from ``prefix``."""

    prefix: str = "bus"

    # -- subjects -------------------------------------------------------------------------
    def agent(self, agent: str) -> str:
        """Core request/reply subject of an agent (queue group = agent name)."""
        return f"{self.prefix}.agent.{agent}"

    def task(self, agent: str) -> str:
        """Durable task subject of an agent, in the work-queue stream."""
        return f"{self.prefix}.task.{agent}"

    def reply(self, agent: str, run_id: str, task_id: str) -> str:
        """Where an agent publishes the reply to a workflow task: one subject per task, so
        the reply, kept in stream ``BUS_REPLIES``, is also the task's idempotency record."""
        return f"{self.prefix}.reply.{agent}.{run_id}.{task_token(task_id)}"

    def event(self, event_type: str) -> str:
        return f"{self.prefix}.event.{event_type}"

    def run(self, run_id: str, state: str) -> str:
        """Lifecycle notification of a run (core NATS, for watchers)."""
        return f"{self.prefix}.run.{run_id}.{state}"

    def dlq(self, agent: str) -> str:
        return f"{self.prefix}.dlq.{agent}"

    def cancel(self, run_id: str) -> str:
        """Core subject on which agents hear that a run was cancelled."""
        return f"{self.prefix}.cancel.{run_id}"

    def control(self, verb: str) -> str:
        """Coordinator request subjects (``start``, ``cancel``)."""
        return f"{self.prefix}.control.{verb}"

    # -- streams, consumers and buckets ---------------------------------------------------
    @property
    def tasks_stream(self) -> str:
        return f"{self.prefix.upper()}_TASKS"

    @property
    def replies_stream(self) -> str:
        return f"{self.prefix.upper()}_REPLIES"

    @property
    def events_stream(self) -> str:
        return f"{self.prefix.upper()}_EVENTS"

    @property
    def dlq_stream(self) -> str:
        return f"{self.prefix.upper()}_DLQ"

    def bucket(self, name: str) -> str:
        """KV bucket name: ``runs``, ``cache``, ``topologies``, ``breakers``, ``limits``."""
        return f"{self.prefix}_{name}"

    @property
    def coordinator_consumer(self) -> str:
        return "coordinator"

    @property
    def events_consumer(self) -> str:
        return "coordinator-events"
