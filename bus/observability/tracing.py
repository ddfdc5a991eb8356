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

import secrets
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

HEADER = "traceparent"
"""The NATS header that carries the trace context."""

_HEX = frozenset("0123456789abcdef")
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
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-{'01' if sampled else '00'}"


def parse(traceparent: str) -> tuple[str, str] | None:
    """``(trace_id, span_id)`` of a valid ``traceparent``, else ``None``.

    Follows the W3C rules: lower-case hex, version ``ff`` invalid, all-zero ids invalid, and
    a future version may append fields after the flags.
    """
    parts = traceparent.strip().split("-")
    if len(parts) < 4:
        return None
    version, trace_id, span_id, flags = parts[:4]
    if version == "00" and len(parts) != 4:
        return None
    if not (_is_hex(version, 2) and _is_hex(trace_id, 32) and _is_hex(span_id, 16)):
        return None
    if version == "ff" or not _is_hex(flags, 2):
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
    return f"00-{parsed[0]}-{secrets.token_hex(8)}-{flags}"


def trace_id_of(traceparent: str) -> str:
    """The trace id of ``traceparent`` ("" when it is missing or invalid)."""
    parsed = parse(traceparent)
    return parsed[0] if parsed else ""


def _is_hex(text: str, length: int) -> bool:
    return len(text) == length and _HEX.issuperset(text)


# -- OpenTelemetry (optional) -------------------------------------------------------------


def otel_enabled() -> bool:
    """True when opentelemetry-api is installed and an SDK tracer provider is configured."""
    if not OTEL_AVAILABLE:
        return False
    return not isinstance(_otel.get_tracer_provider(), _otel.ProxyTracerProvider)


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
