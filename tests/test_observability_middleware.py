"""The ``observe`` middleware with fake handlers: counters, log lines, bound context, spans."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from bus.agent import Agent
from bus.errors import TransientError
from bus.messages import ErrorInfo, Reply, Task, error_reply, ok_reply
from bus.middleware.chain import build_chain
from bus.middleware.context import CallContext, Mode, Next
from bus.middleware.retry import retry
from bus.observability.logs import task_fields
from bus.observability.metrics import Metrics
from bus.observability.middleware import observe
from bus.observability.stats import LatencyWindow
from bus.policies import RetryPolicy

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
_agent = Agent("planner")


@_agent.handler
async def plan(task: Any) -> Any:
    return task


def make_ctx(*, attempt: int = 1, mode: Mode = "direct", step: str = "1.then.0") -> CallContext:
    task = Task(id=f"run-1/{step}/{attempt}", agent="planner", input={"n": 1}, run_id="run-1",
                step=step, attempt=attempt, trace=TRACE)  # fmt: skip
    spec = _agent.default_handler
    assert spec is not None
    return CallContext(task, spec, agent="planner", version="1", mode=mode, attempt=attempt)


async def succeed(ctx: CallContext) -> Reply:
    return ok_reply(ctx.task, {"ok": True})


def failing(kind: str) -> Next:
    async def fail(ctx: CallContext) -> Reply:
        return error_reply(ctx.task, ErrorInfo(kind=kind, message=f"boom {kind}"))  # type: ignore[arg-type]

    return fail


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture(autouse=True)
def default_structlog() -> Iterator[None]:
    """structlog's default configuration, whatever an earlier in-process CLI test set."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def test_outcomes_and_durations_are_counted(registry: CollectorRegistry) -> None:
    metrics = Metrics(registry)
    ok = build_chain([observe(metrics)], succeed)
    bad = build_chain([observe(metrics)], failing("timeout"))
    for _ in range(3):
        await ok(make_ctx())
    await bad(make_ctx())
    assert sample(registry, "bus_messages_total", agent="planner", outcome="ok") == 3
    assert sample(registry, "bus_messages_total", agent="planner", outcome="timeout") == 1
    assert sample(registry, "bus_messages_total", agent="planner", outcome="permanent") == 0
    assert sample(registry, "bus_handler_seconds_count", agent="planner") == 4
    assert 0 < sample(registry, "bus_handler_seconds_sum", agent="planner") < 1


async def test_every_error_kind_is_an_outcome(registry: CollectorRegistry) -> None:
    metrics = Metrics(registry)
    kinds = ("transient", "permanent", "timeout", "breaker_open", "rate_limited", "invalid_input")
    for kind in kinds:
        await build_chain([observe(metrics)], failing(kind))(make_ctx())
    for kind in kinds:
        assert sample(registry, "bus_messages_total", agent="planner", outcome=kind) == 1


async def test_durable_redelivery_counts_a_retry(registry: CollectorRegistry) -> None:
    chain = build_chain([observe(Metrics(registry))], succeed)
    await chain(make_ctx(attempt=1, mode="durable"))
    await chain(make_ctx(attempt=2, mode="durable"))
    await chain(make_ctx(attempt=3, mode="durable"))
    await chain(make_ctx(attempt=2, mode="direct"))  # a step-level attempt, not a redelivery
    assert sample(registry, "bus_retries_total", agent="planner") == 2


async def test_in_process_retries_of_the_retry_middleware_are_counted(
    registry: CollectorRegistry,
) -> None:
    calls = 0

    async def flaky(ctx: CallContext) -> Reply:
        nonlocal calls
        calls += 1
        if calls < 3:
            return error_reply(ctx.task, ErrorInfo(kind="transient", message="later"))
        return ok_reply(ctx.task, "done")

    async def no_sleep(_: float) -> None:
        return None

    policy = RetryPolicy(attempts=5, base=0.01)
    chain = build_chain([observe(Metrics(registry)), retry(policy, sleep=no_sleep)], flaky)
    reply = await chain(make_ctx())
    assert reply.ok
    assert calls == 3
    assert sample(registry, "bus_retries_total", agent="planner") == 2
    assert sample(registry, "bus_messages_total", agent="planner", outcome="ok") == 1


async def test_cache_ratelimit_and_breaker_hooks(registry: CollectorRegistry) -> None:
    async def cached(ctx: CallContext) -> Reply:
        return ok_reply(ctx.task, 1, cached=True)

    async def missed(ctx: CallContext) -> Reply:
        ctx.extra.update(cache="miss", ratelimit_wait=0.25, breaker_state="half_open")
        return ok_reply(ctx.task, 1)

    metrics = Metrics(registry)
    await build_chain([observe(metrics)], cached)(make_ctx())
    await build_chain([observe(metrics)], cached)(make_ctx())
    await build_chain([observe(metrics)], missed)(make_ctx())
    await build_chain([observe(metrics)], succeed)(make_ctx())  # no cache at all: neither
    assert sample(registry, "bus_cache_hits_total", agent="planner") == 2
    assert sample(registry, "bus_cache_misses_total", agent="planner") == 1
    assert sample(registry, "bus_ratelimit_wait_seconds_sum", agent="planner") == 0.25
    assert sample(registry, "bus_breaker_state", agent="planner") == 2


async def test_context_is_bound_during_the_call_and_cleared_after() -> None:
    seen: dict[str, Any] = {}

    async def look(ctx: CallContext) -> Reply:
        seen.update(task_fields())
        return ok_reply(ctx.task, None)

    await build_chain([observe(None)], look)(make_ctx(attempt=2))
    assert seen == {
        "run_id": "run-1",
        "step": "1.then.0",
        "agent": "planner",
        "attempt": 2,
        "task_id": "run-1/1.then.0/2",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    }
    assert task_fields() == {}


async def test_logs_start_finish_and_failure() -> None:
    with capture_logs() as logs:
        await build_chain([observe(None)], succeed)(make_ctx())
        await build_chain([observe(None)], failing("permanent"))(make_ctx())
    events = [(e["event"], e["log_level"]) for e in logs]
    assert events == [
        ("task started", "debug"),
        ("task finished", "info"),
        ("task started", "debug"),
        ("task failed", "warning"),
    ]
    finished, failed = logs[1], logs[3]
    assert finished["duration_ms"] >= 0
    assert finished["cached"] is False
    assert failed["error_kind"] == "permanent"
    assert failed["error"] == "boom permanent"


async def test_an_escaping_exception_is_counted_logged_and_reraised(
    registry: CollectorRegistry,
) -> None:
    async def crash(ctx: CallContext) -> Reply:
        raise TransientError("db down")

    with capture_logs() as logs, pytest.raises(TransientError):
        await build_chain([observe(Metrics(registry))], crash)(make_ctx())
    assert sample(registry, "bus_messages_total", agent="planner", outcome="transient") == 1
    assert logs[-1]["event"] == "task failed"
    assert logs[-1]["error"] == "db down"


async def test_window_records_every_call() -> None:
    window = LatencyWindow()
    chain_ok = build_chain([observe(None, window=window)], succeed)
    chain_bad = build_chain([observe(None, window=window)], failing("transient"))
    await chain_ok(make_ctx())
    await chain_ok(make_ctx())
    await chain_bad(make_ctx())
    assert (window.calls, window.errors, len(window)) == (3, 1, 3)


async def test_a_custom_logger_is_used() -> None:
    lines: list[tuple[str, dict[str, Any]]] = []

    class Recorder:
        def debug(self, event: str, **kw: Any) -> None:
            lines.append((event, kw))

        info = warning = debug

    await build_chain([observe(None, logger=Recorder())], succeed)(make_ctx())
    assert [event for event, _ in lines] == ["task started", "task finished"]


def _run_python(*parts: str) -> str:
    code = "\n".join(textwrap.dedent(part) for part in parts)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


CHAIN_SCRIPT = """
    import anyio
    from bus.agent import Agent
    from bus.messages import ErrorInfo, Task, error_reply, ok_reply
    from bus.middleware.chain import build_chain
    from bus.middleware.context import CallContext
    from bus.observability.middleware import observe

    agent = Agent("planner")

    @agent.handler
    async def plan(x: object) -> object:
        return x

    async def ok(ctx):
        return ok_reply(ctx.task, 1)

    async def bad(ctx):
        return error_reply(ctx.task, ErrorInfo(kind="transient", message="no"))

    def ctx():
        task = Task(id="r/0/1", agent="planner", run_id="r", step="0",
                    trace="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        return CallContext(task, agent.default_handler, agent="planner", version="1",
                           mode="direct")

    async def main():
        await build_chain([observe(None)], ok)(ctx())
        await build_chain([observe(None)], bad)(ctx())
"""


def test_otel_spans_join_the_task_trace() -> None:
    pytest.importorskip("opentelemetry.sdk")
    out = _run_python(
        """
        import json
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        """,
        CHAIN_SCRIPT,
        """
            from bus.observability import tracing
            anyio.run(main)
            tracing.record_run_span(topology="review", run_id="r", state="failed",
                traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                started_at=1700000000.0, finished_at=1700000002.5)
            print(json.dumps([
                {"name": s.name, "trace": format(s.context.trace_id, "032x"),
                 "parent": format(s.parent.span_id, "016x") if s.parent else None,
                 "status": s.status.status_code.name, "attrs": dict(s.attributes),
                 "seconds": (s.end_time - s.start_time) / 1e9}
                for s in exporter.get_finished_spans()]))
            """,
    )
    handled_ok, handled_bad, run = json.loads(out.strip().splitlines()[-1])
    for span in (handled_ok, handled_bad, run):
        assert span["trace"] == "4bf92f3577b34da6a3ce929d0e0e4736"
        assert span["parent"] == "00f067aa0ba902b7"
    assert handled_ok["name"] == "planner handle"
    assert handled_ok["status"] == "UNSET"
    assert handled_ok["attrs"]["bus.run_id"] == "r"
    assert handled_ok["attrs"]["bus.step"] == "0"
    assert handled_bad["status"] == "ERROR"
    assert handled_bad["attrs"]["bus.error.kind"] == "transient"
    assert run["name"] == "run review"
    assert run["status"] == "ERROR"
    assert run["seconds"] == pytest.approx(2.5)


def test_without_opentelemetry_observe_still_works() -> None:
    out = _run_python(
        """
        import sys
        sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
        """,
        CHAIN_SCRIPT,
        """
            from bus.observability import tracing
            anyio.run(main)
            print(tracing.OTEL_AVAILABLE, tracing.otel_enabled())
            """,
    )
    assert out.strip().splitlines()[-1] == "False False"
