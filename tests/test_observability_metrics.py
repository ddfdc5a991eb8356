"""The Prometheus metrics of DESIGN.md on a fresh registry, and their exposition."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from bus.observability.metrics import OUTCOMES, Metrics

DESIGN_NAMES = {
    "bus_messages": ("counter", ("agent", "outcome")),
    "bus_handler_seconds": ("histogram", ("agent",)),
    "bus_retries": ("counter", ("agent",)),
    "bus_breaker_state": ("gauge", ("agent",)),
    "bus_ratelimit_wait_seconds": ("histogram", ("agent",)),
    "bus_cache_hits": ("counter", ("agent",)),
    "bus_cache_misses": ("counter", ("agent",)),
    "bus_dlq": ("counter", ("agent", "reason")),
    "bus_runs": ("counter", ("topology", "state")),
    "bus_run_seconds": ("histogram", ("topology",)),
    "bus_transitions_rejected": ("counter", ("reason",)),
}


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def test_every_design_metric_exists_with_its_type_and_labels(registry: CollectorRegistry) -> None:
    metrics = Metrics(registry)
    metrics.init_agent("planner")
    metrics.dead_lettered("planner", "max_deliver")
    metrics.run_changed("review", "completed", 1.0)
    metrics.transition_rejected("late")
    found = {m.name: m for m in registry.collect()}
    for name, (kind, labels) in DESIGN_NAMES.items():
        assert name in found, name
        assert found[name].type == kind, name
        sample = next(s for s in found[name].samples if not s.name.endswith("_created"))
        assert tuple(k for k in sample.labels if k != "le") == labels, name


def test_exposed_names_are_exactly_designs(registry: CollectorRegistry) -> None:
    Metrics(registry).init_agent("planner")
    text = generate_latest(registry).decode()
    for name in ("bus_messages_total", "bus_retries_total", "bus_cache_hits_total",
                 "bus_cache_misses_total", "bus_handler_seconds_bucket",
                 "bus_ratelimit_wait_seconds_sum", "bus_breaker_state"):  # fmt: skip
        assert f"\n{name}{{" in text, name


def test_init_agent_creates_zero_series_for_every_outcome(registry: CollectorRegistry) -> None:
    Metrics(registry).init_agent("linter")
    for outcome in OUTCOMES:
        value = registry.get_sample_value(
            "bus_messages_total", {"agent": "linter", "outcome": outcome}
        )
        assert value == 0.0
    assert registry.get_sample_value("bus_breaker_state", {"agent": "linter"}) == 0.0


@pytest.mark.parametrize(
    ("state", "value"), [("closed", 0), ("open", 1), ("half_open", 2), ("half-open", 2), (1, 1)]
)
def test_breaker_state_values(registry: CollectorRegistry, state: str | int, value: int) -> None:
    metrics = Metrics(registry)
    metrics.set_breaker_state("tester", state)
    assert registry.get_sample_value("bus_breaker_state", {"agent": "tester"}) == value


def test_run_changed_counts_states_and_observes_finished_durations(
    registry: CollectorRegistry,
) -> None:
    metrics = Metrics(registry)
    metrics.run_changed("review", "running")
    metrics.run_changed("review", "completed", 1.5)
    metrics.run_changed("review", "failed", 0.5)
    get = registry.get_sample_value
    assert get("bus_runs_total", {"topology": "review", "state": "running"}) == 1
    assert get("bus_runs_total", {"topology": "review", "state": "completed"}) == 1
    assert get("bus_run_seconds_count", {"topology": "review"}) == 2
    assert get("bus_run_seconds_sum", {"topology": "review"}) == 2.0
    assert get("bus_run_seconds_bucket", {"topology": "review", "le": "1.0"}) == 1


def test_dlq_rejections_and_ratelimit_waits(registry: CollectorRegistry) -> None:
    metrics = Metrics(registry)
    metrics.dead_lettered("docs", "max_deliver")
    metrics.dead_lettered("docs", "max_deliver")
    metrics.dead_lettered("docs", "invalid_input")
    metrics.transition_rejected("duplicate")
    metrics.ratelimit_waited("docs", 0.25)
    metrics.ratelimit_waited("docs", 0.5)
    get = registry.get_sample_value
    assert get("bus_dlq_total", {"agent": "docs", "reason": "max_deliver"}) == 2
    assert get("bus_dlq_total", {"agent": "docs", "reason": "invalid_input"}) == 1
    assert get("bus_transitions_rejected_total", {"reason": "duplicate"}) == 1
    assert get("bus_ratelimit_wait_seconds_sum", {"agent": "docs"}) == 0.75
    assert get("bus_ratelimit_wait_seconds_count", {"agent": "docs"}) == 2


def test_handler_buckets_span_half_a_millisecond_to_a_minute(registry: CollectorRegistry) -> None:
    metrics = Metrics(registry)
    metrics.calls("planner").record("ok", 0.0004)
    metrics.calls("planner").record("ok", 59.0)
    get = registry.get_sample_value
    assert get("bus_handler_seconds_bucket", {"agent": "planner", "le": "0.0005"}) == 1
    assert get("bus_handler_seconds_bucket", {"agent": "planner", "le": "30.0"}) == 1
    assert get("bus_handler_seconds_bucket", {"agent": "planner", "le": "60.0"}) == 2


def test_a_call_on_a_bucket_bound_counts_in_that_bucket(registry: CollectorRegistry) -> None:
    calls = Metrics(registry).calls("planner")
    calls.record("ok", 0.005)
    calls.record("timeout", 0.0051)
    calls.record("brand_new_kind", 1000.0)  # beyond every bound: only +Inf
    get = registry.get_sample_value
    assert get("bus_handler_seconds_bucket", {"agent": "planner", "le": "0.0025"}) == 0
    assert get("bus_handler_seconds_bucket", {"agent": "planner", "le": "0.005"}) == 1
    assert get("bus_handler_seconds_bucket", {"agent": "planner", "le": "0.01"}) == 2
    assert get("bus_handler_seconds_bucket", {"agent": "planner", "le": "60.0"}) == 2
    assert get("bus_handler_seconds_bucket", {"agent": "planner", "le": "+Inf"}) == 3
    assert get("bus_handler_seconds_count", {"agent": "planner"}) == 3
    assert get("bus_handler_seconds_sum", {"agent": "planner"}) == 0.005 + 0.0051 + 1000.0
    assert get("bus_messages_total", {"agent": "planner", "outcome": "timeout"}) == 1
    assert get("bus_messages_total", {"agent": "planner", "outcome": "brand_new_kind"}) == 1


def test_two_registries_are_independent() -> None:
    a, b = CollectorRegistry(), CollectorRegistry()
    Metrics(a).transition_rejected("late")
    Metrics(b)
    assert a.get_sample_value("bus_transitions_rejected_total", {"reason": "late"}) == 1
    assert b.get_sample_value("bus_transitions_rejected_total", {"reason": "late"}) is None


def test_default_is_one_instance_per_process() -> None:
    assert Metrics.default() is Metrics.default()


def test_metrics_is_a_coordinator_observer(registry: CollectorRegistry) -> None:
    from bus.coordinator.observer import CoordinatorObserver

    observer: CoordinatorObserver = Metrics(registry)
    observer.run_changed("review", "cancelled", 3.0)
    observer.transition_rejected("unknown_run")
    assert (
        registry.get_sample_value("bus_runs_total", {"topology": "review", "state": "cancelled"})
        == 1
    )


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_exposition_passes_promtool(registry: CollectorRegistry) -> None:
    metrics = Metrics(registry)
    for agent in ("planner", "rule-reviewer"):
        metrics.init_agent(agent)
        for _ in range(3):
            metrics.calls(agent).record("ok", 0.02)
        metrics.dead_lettered(agent, "max_deliver")
    metrics.run_changed("review", "completed", 2.0)
    metrics.transition_rejected("late")
    check_with_promtool(generate_latest(registry))


def check_with_promtool(exposition: bytes) -> None:
    """Fail with promtool's complaints unless ``promtool check metrics`` accepts the text."""
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=exposition, capture_output=True, timeout=30
    )
    assert result.returncode == 0, (result.stdout + result.stderr).decode()
