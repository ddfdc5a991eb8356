"""The coordinator's request/reply protocol on ``bus.control.start`` and ``bus.control.cancel``.

Requests and answers are MessagePack, or JSON when the request says
``Content-Type: application/json`` (any NATS client can start a run). Every replica listens
in queue group ``coordinator``, so each request is served once.
"""

from __future__ import annotations

from typing import Any

import msgspec

QUEUE = "coordinator"


class StartRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    """Start a run of a registered topology.

    Attributes:
        topology: its name.
        version: a registered version (empty: the latest).
        input: the run's input.
        trace: W3C ``traceparent`` (empty: a new trace).
        run_id: a caller-chosen id, which makes the start idempotent (empty: a new one).
    """

    topology: str
    version: str = ""
    input: Any = None
    trace: str = ""
    run_id: str = ""


class CancelRequest(msgspec.Struct, frozen=True):
    """Cancel a run."""

    run_id: str


class ControlAnswer(msgspec.Struct, frozen=True, omit_defaults=True):
    """The answer to either request.

    Attributes:
        run_id: the run started or cancelled.
        state: the run's state after the request.
        created: for a start, false when the run id already existed (nothing new started).
        error: why the request failed (then the other fields are empty).
        kind: the error's class: ``not_found``, ``invalid``, ``conflict`` or ``unavailable``.
    """

    run_id: str = ""
    state: str = ""
    created: bool = False
    error: str = ""
    kind: str = ""
