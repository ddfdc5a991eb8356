"""W3C trace context (``traceparent``) and, when the ``otel`` extra is installed, spans.

A ``traceparent`` is ``00-<trace id: 32 hex>-<parent span id: 16 hex>-<flags: 2 hex>``. It is
made once where work enters the bus (``bus publish``, ``bus run``), stored in the run, and
carried in every task and reply (``Task.trace`` and the ``traceparent`` header), so every log
line of a run shares one ``trace_id``.

OpenTelemetry is optional: ``opentelemetry-api`` is looked up once, at import. Without it (or
with it but no SDK tracer provider configured) ``handler_span`` is a no-op and costs one
function call; with an SDK configured, handlers and runs become spans of the run's trace.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import lru_cache
from random import getrandbits
from typing import Any

HEADER = "traceparent"
"""The NATS header that carries the trace context."""

_UNKNOWN = object()

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[^\s]*)?")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16

try:
    from opentelemetry import trace as _otel
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # the ``otel`` extra is not installed
    _otel = None  # type: ignore[assignment]
    OTEL_AVAILABLE = False
else:
    OTEL_AVAILABLE = True
    _propagator = TraceContextTextMapPropagator()


def new_traceparent(*, sampled: bool = True) -> str:
    """A fresh ``traceparent``: a new trace id and a new span id."""
    return f"00-{_random_id(128)}-{_random_id(64)}-{'01' if sampled else '00'}"


def _random_id(bits: int) -> str:
    # Trace ids need to be unique, not secret: ``random`` (reseeded in forked children) draws
    # them without the getrandom() syscall ``secrets`` makes per id. Zero is invalid.
    return f"{getrandbits(bits) or 1:0{bits // 4}x}"


def parse(traceparent: str) -> tuple[str, str] | None:
    """``(trace_id, span_id)`` of a valid ``traceparent``, else ``None``.

    Follows the W3C rules: lower-case hex, version ``ff`` invalid, all-zero ids invalid, and
    a future version may append fields after the flags.
    """
    match = _TRACEPARENT.fullmatch(traceparent.strip())
    if match is None:
        return None
    version, trace_id, span_id, _flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return trace_id, span_id


def child(traceparent: str) -> str:
    """The same trace with a new span id (a fresh trace when ``traceparent`` is invalid)."""
    parsed = parse(traceparent)
    if parsed is None:
        return new_traceparent()
    flags = traceparent.strip().split("-")[3]
    return f"00-{parsed[0]}-{_random_id(64)}-{flags}"


@lru_cache(maxsize=4096)  # every task of a run repeats its traceparent: called per handler call
def trace_id_of(traceparent: str) -> str:
    """The trace id of ``traceparent`` ("" when it is missing or invalid)."""
    parsed = parse(traceparent)
    return parsed[0] if parsed else ""


# -- OpenTelemetry (optional) -------------------------------------------------------------


def otel_enabled() -> bool:
    """True when opentelemetry-api is installed and an SDK tracer provider is configured."""
    if not OTEL_AVAILABLE:
        return False
    # Called on every handler call: the API's get_tracer_provider() reads os.environ each
    # time; the global it sets is the cheap answer (a set provider is never unset).
    provider = getattr(_otel, "_TRACER_PROVIDER", _UNKNOWN)
    if provider is _UNKNOWN:
        return not isinstance(_otel.get_tracer_provider(), _otel.ProxyTracerProvider)
    return provider is not None


def handler_span(
    name: str, traceparent: str, attributes: Mapping[str, Any]
) -> AbstractContextManager[Any]:
    """A consumer span for one handler call, child of ``traceparent`` (no-op without OTel).

    The span is yielded (``None`` when disabled); mark failures with ``mark_error``.
    """
    if not otel_enabled():
        return nullcontext()
    return _span(name, traceparent, attributes)


@contextmanager
def _span(name: str, traceparent: str, attributes: Mapping[str, Any]) -> Iterator[Any]:
    parent = _propagator.extract({HEADER: traceparent}) if parse(traceparent) else None
    tracer = _otel.get_tracer("bus")
    with tracer.start_as_current_span(
        name,
        context=parent,
        kind=_otel.SpanKind.CONSUMER,
        attributes=dict(attributes),
        record_exception=False,
        set_status_on_exception=True,
    ) as span:
        yield span


def mark_error(span: Any, kind: str, message: str) -> None:
    """Record a failed call on a span from ``handler_span`` (ignores ``None``)."""
    if span is None:
        return
    span.set_attribute("bus.error.kind", kind)
    span.set_status(_otel.Status(_otel.StatusCode.ERROR, f"{kind}: {message}"))


def record_run_span(
    *,
    topology: str,
    run_id: str,
    traceparent: str,
    state: str,
    started_at: float,
    finished_at: float,
) -> None:
    """Emit one span covering a finished run (epoch seconds), when OTel is configured.

    Runs outlive processes and move between coordinator replicas, so the span is recorded
    afterwards, by whichever replica applied the terminal transition.
    """
    if not otel_enabled():
        return
    parent = _propagator.extract({HEADER: traceparent}) if parse(traceparent) else None
    span = _otel.get_tracer("bus").start_span(
        f"run {topology}",
        context=parent,
        kind=_otel.SpanKind.INTERNAL,
        attributes={"bus.topology": topology, "bus.run_id": run_id, "bus.run.state": state},
        start_time=int(started_at * 1e9),
    )
    if state != "completed":
        span.set_status(_otel.Status(_otel.StatusCode.ERROR, state))
    span.end(end_time=int(finished_at * 1e9))
