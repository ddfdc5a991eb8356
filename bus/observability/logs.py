"""One structlog configuration for every entry point (the library never configures on import).

JSON lines when the stream is not a terminal, readable colour when it is. Task fields
(``run_id``, ``step``, ``agent``, ``attempt``, ``task_id``, ``trace_id``) are set for the
length of each call by the outermost middleware (``bus.observability.middleware.observe``) and
added to every line by the ``add_task_fields`` processor, so every line logged during a call
carries them (a program that configures structlog itself adds that processor). Records from
the standard ``logging`` module (nats-py, asyncio) are rendered the same way, so a process
writes one format only.

A JSON line looks like::

    {"event": "task finished", "duration_ms": 12.4, "cached": false, "run_id": "9f...",
     "step": "0", "agent": "planner", "attempt": 1, "task_id": "9f.../0/1",
     "trace_id": "4bf9...", "level": "info", "timestamp": "2026-11-26T06:12:00.123Z"}
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TextIO, cast

import msgspec
import structlog

from bus.observability.tracing import trace_id_of

if TYPE_CHECKING:
    from bus.middleware.context import CallContext

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
FORMATS = ("json", "console")


current_call: ContextVar[CallContext | None] = ContextVar("bus_current_call", default=None)
"""The handler call in progress, set by ``observe`` for its length.

One variable holding the call rather than one per field (structlog's ``bind_contextvars``): a
call sets and resets it once, and the fields are spelled out only when a line is written.
"""


def task_fields() -> dict[str, Any]:
    """The task fields of the call in progress (empty outside a call)."""
    ctx = current_call.get()
    if ctx is None:
        return {}
    task = ctx.task
    return {
        "run_id": task.run_id,
        "step": task.step,
        "agent": ctx.agent,
        "attempt": ctx.attempt,
        "task_id": task.id,
        "trace_id": trace_id_of(task.trace) if task.trace else "",
    }


def add_task_fields(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: the task fields of the call in progress (see ``task_fields``)."""
    for key, value in task_fields().items():
        event_dict.setdefault(key, value)
    return event_dict


_debug_enabled = True  # structlog unconfigured writes every level


def debug_enabled() -> bool:
    """Whether debug lines are written. A hot path checks this before a loop of
    ``log.debug`` calls: each call on a module's structlog proxy costs about 2 µs even when
    the level drops the line."""
    return _debug_enabled


def configure_logging(
    level: str | None = None,
    fmt: str | None = None,
    *,
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Configure structlog (and the standard ``logging`` root) for a ``bus`` process.

    Call it once, from an entry point; library code only calls ``structlog.get_logger``.

    Args:
        level: ``debug`` | ``info`` | ``warning`` | ``error`` (else ``BUS_LOG_LEVEL``, ``info``).
        fmt: ``json`` | ``console`` (else ``BUS_LOG_FORMAT``, else ``console`` when the
            stream is a terminal and ``json`` otherwise).
        stream: where lines go (default: whatever ``sys.stderr`` is at each write, so a
            process, or a test harness, that swaps stderr later keeps getting the lines).
        environ: the environment to read defaults from (``os.environ`` by default).
    """
    env = os.environ if environ is None else environ
    out: TextIO = stream if stream is not None else cast(TextIO, _Stderr())
    tty = _isatty(out)
    level_name = (level or env.get("BUS_LOG_LEVEL") or "info").lower()
    fmt = (fmt or env.get("BUS_LOG_FORMAT") or ("console" if tty else "json")).lower()
    # An unknown value (a typo in BUS_LOG_*) falls back to the default: logging must start.
    threshold = LEVELS.get(level_name, logging.INFO)
    global _debug_enabled
    _debug_enabled = threshold <= logging.DEBUG
    if fmt not in FORMATS:
        fmt = "console" if tty else "json"

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        add_task_fields,
        structlog.processors.add_log_level,
        UtcTimestamper(),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Any
    if fmt == "json":
        shared.append(structlog.processors.dict_tracebacks)
        renderer = structlog.processors.JSONRenderer(serializer=_dumps)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=tty)

    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=True,
    )
    _route_stdlib_logging(out, threshold, shared, renderer)


def _route_stdlib_logging(out: TextIO, threshold: int, shared: list[Any], renderer: Any) -> None:
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    # Third-party debug output (asyncio, nats) drowns ours; it shows from warning up.
    root.setLevel(max(threshold, logging.WARNING))


class _Stderr(io.TextIOBase):
    """``sys.stderr`` looked up at every write, never the object it was at configuration."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


class UtcTimestamper:
    """Adds ``timestamp``: ISO 8601 UTC with milliseconds (``2026-11-26T06:12:00.123Z``).

    The same shape as structlog's ``TimeStamper(fmt="iso", utc=True)`` at a sixth of the cost
    (one line per handler call makes it hot): the date and time part is formatted once a second.
    """

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        event_dict["timestamp"] = f"{self._prefix}.{int((now - second) * 1000):03d}Z"
        return event_dict


_encoder = msgspec.json.Encoder(enc_hook=repr)


def _dumps(event_dict: Any, **_: Any) -> str:
    # msgspec renders a line ~8x faster than json.dumps; the stdlib keeps odd keys working.
    try:
        return _encoder.encode(event_dict).decode()
    except (TypeError, ValueError, msgspec.EncodeError):
        return json.dumps(event_dict, default=repr)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
