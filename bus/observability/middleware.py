"""``observe``: the outermost middleware — log context, logs, metrics, latency window, spans.

Inner middleware report what only they know through ``ctx.extra`` (keys below); ``observe``
reads them after the call, so it alone writes metrics and the other middleware stay free of
Prometheus:

- ``ctx.extra["retries"]``: in-process retry attempts made (direct mode).
- ``ctx.extra["cache"]``: ``"hit"`` or ``"miss"`` (a reply with ``cached=True`` is a hit
  anyway).
- ``ctx.extra["ratelimit_wait"]``: seconds the call waited for a token.
- ``ctx.extra["breaker_state"]``: the breaker's state after the call (``closed``/``open``/
  ``half_open``).
"""

from __future__ import annotations

import logging
import time
from contextlib import AbstractContextManager
from typing import Any

import structlog

from bus.messages import Reply, error_info
from bus.middleware.context import CallContext, Middleware, Next
from bus.observability import tracing
from bus.observability.logs import current_call
from bus.observability.metrics import Metrics
from bus.observability.stats import LatencyWindow

EXTRA_RETRIES = "retries"
EXTRA_CACHE = "cache"
EXTRA_RATELIMIT_WAIT = "ratelimit_wait"
EXTRA_BREAKER_STATE = "breaker_state"


class _Series:
    """One agent's labelled children, resolved once (``labels()`` takes a lock each call)."""

    __slots__ = ("cache_hits", "cache_misses", "calls", "retries")

    def __init__(self, metrics: Metrics, agent: str) -> None:
        self.calls = metrics.calls(agent)
        self.retries = metrics.retries.labels(agent)
        self.cache_hits = metrics.cache_hits.labels(agent)
        self.cache_misses = metrics.cache_misses.labels(agent)


def observe(
    metrics: Metrics | None,
    *,
    logger: Any = None,
    window: LatencyWindow | None = None,
) -> Middleware:
    """The outermost middleware of every chain.

    Sets the task fields (``run_id``, ``step``, ``agent``, ``attempt``, ``task_id``,
    ``trace_id``; see ``bus.observability.logs.current_call``) for the whole call, logs the
    start (debug), the finish with ``duration_ms`` (info) or the failure with ``error_kind``
    and ``error`` (warning), counts ``bus_messages_total``, ``bus_handler_seconds``, retries,
    cache hits/misses, rate-limit waits and the breaker state, and records the call in
    ``window`` for micro STATS. With
    OpenTelemetry configured, each call is a span in the task's trace.

    Args:
        metrics: where to count (``None``: logs only).
        logger: a structlog logger (default ``structlog.get_logger("bus.handler")``, resolved
            when the first call is made and kept: configure logging before serving).
        window: the agent's latency window, reported by ``stats_data``.
    """
    log: Any = logger
    info_enabled = debug_enabled = True
    series: dict[str, _Series] = {}

    def series_of(agent: str) -> _Series | None:
        if metrics is None:
            return None
        found = series.get(agent)
        if found is None:
            found = series[agent] = _Series(metrics, agent)
        return found

    def account(ctx: CallContext, reply: Reply, seconds: float) -> None:
        duration_ms = seconds * 1000.0
        extra = ctx.extra
        error = reply.error
        if error is None and not extra and not reply.cached and ctx.attempt == 1:  # the usual call
            if window is not None:
                window.add(duration_ms)
            s = series.get(ctx.agent) or series_of(ctx.agent)
            if s is not None:
                s.calls.record_ok(seconds)
            if info_enabled:
                log.info("task finished", duration_ms=round(duration_ms, 3), cached=False)
            return
        cache = "hit" if reply.cached else extra.get(EXTRA_CACHE) if extra else None
        if window is not None:
            window.record(duration_ms, ok=error is None, cache=cache)
        s = series.get(ctx.agent) or series_of(ctx.agent)
        if s is not None and metrics is not None:
            s.calls.record("ok" if error is None else error.kind, seconds)
            if extra:
                _account_extra(metrics, s, ctx.agent, extra)
            if ctx.mode == "durable" and ctx.attempt > 1:
                s.retries.inc()
            if cache == "hit":
                s.cache_hits.inc()
            elif cache == "miss":
                s.cache_misses.inc()
        if error is None:
            if info_enabled:
                log.info("task finished", duration_ms=round(duration_ms, 3), cached=reply.cached)
        else:
            log.warning(
                "task failed",
                duration_ms=round(duration_ms, 3),
                error_kind=error.kind,
                error=error.message,
            )

    async def observe_call(ctx: CallContext, call_next: Next, span: Any = _UNTRACED) -> Reply:
        nonlocal log, info_enabled, debug_enabled
        if log is None:
            # Resolved once, at the first call: a lazy proxy would re-resolve on every call.
            log = structlog.get_logger("bus.handler").bind()
            enabled = getattr(log, "is_enabled_for", None)
            if enabled is not None:
                info_enabled = enabled(logging.INFO)
                debug_enabled = enabled(logging.DEBUG)
        if span is _UNTRACED:
            if tracing.otel_enabled():
                with _span(ctx) as opened:
                    return await observe_call(ctx, call_next, opened)
            span = None  # no tracer: not even a no-op ``with`` per call
        token = current_call.set(ctx)
        try:
            if debug_enabled:
                log.debug("task started", mode=ctx.mode)
            start = time.perf_counter()
            try:
                reply = await call_next(ctx)
            except Exception as exc:
                failed(ctx, exc, start, span)
                raise
            account(ctx, reply, time.perf_counter() - start)
            if span is not None and reply.error is not None:
                tracing.mark_error(span, reply.error.kind, reply.error.message)
            return reply
        finally:
            current_call.reset(token)

    def failed(ctx: CallContext, exc: Exception, start: float, span: Any) -> None:
        # Only when no error boundary sits below: count it; the caller lets it propagate.
        info = error_info(exc)
        reply = Reply(task_id=ctx.task.id, status="error", agent=ctx.agent, error=info)
        account(ctx, reply, time.perf_counter() - start)
        tracing.mark_error(span, info.kind, info.message)

    return observe_call


_UNTRACED: Any = object()  # observe_call's span argument before it looked for a tracer


def _span(ctx: CallContext) -> AbstractContextManager[Any]:
    """The call's OpenTelemetry span (only called when a tracer is configured)."""
    task = ctx.task
    attributes = {
        "messaging.system": "nats",
        "bus.agent": ctx.agent,
        "bus.run_id": task.run_id,
        "bus.step": task.step,
        "bus.attempt": ctx.attempt,
        "bus.mode": ctx.mode,
    }
    return tracing.handler_span(f"{ctx.agent} handle", task.trace, attributes)


def _account_extra(metrics: Metrics, s: _Series, agent: str, extra: dict[str, Any]) -> None:
    retries = extra.get(EXTRA_RETRIES)
    if retries:
        s.retries.inc(int(retries))
    waited = extra.get(EXTRA_RATELIMIT_WAIT)
    if waited:
        metrics.ratelimit_waited(agent, float(waited))
    state = extra.get(EXTRA_BREAKER_STATE)
    if state is not None:
        metrics.set_breaker_state(agent, state)
