"""One structlog configuration for every entry point (the library never configures on import).

JSON lines when stderr is not a terminal, readable colour when it is. Task fields (``run_id``,
``step``, ``agent``, ``attempt``, ``task_id``, ``trace_id``) are bound in contextvars by the
outermost middleware, so every line logged during a call carries them.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

import structlog

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure_logging(
    level: str | None = None,
    fmt: str | None = None,
    *,
    stream: TextIO | None = None,
    environ: dict[str, str] | None = None,
) -> None:
    """Configure structlog for a ``bus`` process.

    Args:
        level: ``debug`` | ``info`` | ``warning`` | ``error`` (else ``BUS_LOG_LEVEL``, ``info``).
        fmt: ``json`` | ``console`` (else ``BUS_LOG_FORMAT``, else by whether stderr is a tty).
        stream: where lines go (stderr by default).
        environ: the environment to read defaults from (``os.environ`` by default).
    """
    env = os.environ if environ is None else environ
    out = stream or sys.stderr
    level_name = (level or env.get("BUS_LOG_LEVEL") or "info").lower()
    fmt = (fmt or env.get("BUS_LOG_FORMAT") or ("console" if out.isatty() else "json")).lower()
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if fmt == "json":
        processors.append(structlog.processors.format_exc_info)
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS.get(level_name, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=True,
    )
