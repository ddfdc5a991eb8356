"""Pure aggregation for ``bus stats``: percentiles, latency windows, STATS data, summaries."""

from __future__ import annotations

from typing import Any

import pytest

from bus.observability.stats import LatencyWindow, percentile, stats_data, summarize


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 0.5) == pytest.approx(50.5)
    assert percentile(values, 0.99) == pytest.approx(99.01)
    assert percentile(values, 0.0) == 1.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([], 0.5) == 0.0
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0  # order does not matter


def test_latency_window_keeps_only_the_most_recent_durations() -> None:
    window = LatencyWindow(size=4)
    for ms in (100.0, 100.0, 100.0, 100.0, 1.0, 2.0, 3.0, 4.0):
        window.record(ms, ok=True)
    assert len(window) == 4
    assert window.percentile(1.0) == 4.0  # the 100 ms calls were pushed out
    assert window.calls == 8
    assert window.total_ms == pytest.approx(410.0)


def test_latency_window_counts_errors_and_cache() -> None:
    window = LatencyWindow()
    window.record(1.0, ok=True, cache="hit")
    window.record(2.0, ok=False, cache="miss")
    window.record(3.0, ok=True)
    assert (window.calls, window.errors, window.cache_hits, window.cache_misses) == (3, 1, 1, 1)
    with pytest.raises(ValueError, match="size"):
        LatencyWindow(size=0)


def test_stats_data_shape() -> None:
    window = LatencyWindow()
    for ms in range(1, 101):
        window.record(float(ms), ok=ms != 50, cache="hit" if ms <= 10 else "miss")
    data = stats_data(window, breaker={"state": "half_open", "opens": 2}, limiter={"tokens": 3})
    assert data == {
        "calls": 100,
        "errors": 1,
        "total_ms": 5050.0,
        "latency_ms": {"p50": 50.5, "p99": 99.01, "window": 100},
        "cache": {"hits": 10, "misses": 90},
        "breaker": {"state": "half_open", "opens": 2},
        "limiter": {"tokens": 3},
    }
    assert stats_data(window, cache={"hits": 1, "misses": 0})["cache"] == {"hits": 1, "misses": 0}
    assert "breaker" not in stats_data(LatencyWindow())


def _record(topology: str, state: str, seconds: float | None, agents: list[str]) -> dict[str, Any]:
    created = 1_700_000_000.0
    return {
        "run_id": f"{topology}-{state}-{seconds}",
        "topology": topology,
        "state": state,
        "created_at": created,
        "finished_at": created + seconds if seconds is not None else None,
        "steps": {
            str(i): {"agent": a, "state": "succeeded", "attempts": 1} for i, a in enumerate(agents)
        },
    }


def _endpoint(data: dict[str, Any] | None, **fields: Any) -> dict[str, Any]:
    return {"name": "default", "num_requests": 0, "num_errors": 0, "processing_time": 0,
            "average_processing_time": 0, "data": data, **fields}  # fmt: skip


def _service(agent: str, *endpoints: dict[str, Any]) -> dict[str, Any]:
    return {"name": agent, "id": "x", "version": "1.0.0", "metadata": {},
            "endpoints": list(endpoints)}  # fmt: skip


RECORDS = [
    _record("review", "completed", 1.0, ["planner", "linter"]),
    _record("review", "completed", 2.0, ["planner", "linter"]),
    _record("review", "completed", 3.0, ["planner", "linter"]),
    _record("review", "failed", 4.0, ["planner"]),
    _record("review", "cancelled", 10.0, ["planner"]),
    _record("review", "running", None, ["planner"]),
    _record("docs", "completed", 0.5, ["docs"]),
]


def test_topology_numbers() -> None:
    summary = summarize(RECORDS, [])
    docs, review = summary.topologies
    assert review.topology == "review"
    assert review.runs == 6
    assert review.states == {"cancelled": 1, "completed": 3, "failed": 1, "running": 1}
    assert review.success_rate == 0.75  # 3 completed of 4 decided; cancelled is no failure
    assert review.avg_s == 4.0  # (1 + 2 + 3 + 4 + 10) / 5 finished runs
    assert review.p50_s == 3.0
    assert review.p99_s == pytest.approx(9.76)  # 4 + 0.96 * (10 - 4)
    assert (docs.runs, docs.success_rate, docs.avg_s) == (1, 1.0, 0.5)


def test_topology_without_finished_runs() -> None:
    (only,) = summarize([_record("slow", "running", None, [])], []).topologies
    assert (only.runs, only.success_rate, only.avg_s, only.p99_s) == (1, None, None, None)


def _data(calls: int, errors: int, total: float, p50: float, p99: float, n: int,
          hits: int = 0, misses: int = 0, breaker: str = "closed") -> dict[str, Any]:  # fmt: skip
    return {"calls": calls, "errors": errors, "total_ms": total,
            "latency_ms": {"p50": p50, "p99": p99, "window": n},
            "cache": {"hits": hits, "misses": misses}, "breaker": {"state": breaker}}  # fmt: skip


def test_agent_numbers_merge_instances() -> None:
    services = [
        _service("planner", _endpoint(_data(60, 3, 600.0, 8.0, 40.0, 60, hits=10, misses=30))),
        _service(
            "planner",
            _endpoint(_data(40, 1, 600.0, 13.0, 90.0, 40, hits=0, misses=20, breaker="open")),
        ),
        _service("linter", _endpoint(_data(10, 0, 50.0, 5.0, 6.0, 10))),
    ]
    summary = summarize([], services)
    linter, planner = summary.agents
    assert planner.agent == "planner"
    assert planner.instances == 2
    assert (planner.calls, planner.errors) == (100, 4)
    assert planner.success_rate == 0.96
    assert planner.avg_ms == 12.0  # 1200 ms over 100 calls, all modes
    assert planner.p50_ms == 10.0  # (8 * 60 + 13 * 40) / 100
    assert planner.p99_ms == 90.0  # the worst instance: an upper bound
    assert planner.breaker == "open"  # the worst instance
    assert planner.cache_hit_rate == pytest.approx(10 / 60, abs=1e-4)
    assert (linter.calls, linter.success_rate, linter.breaker) == (10, 1.0, "closed")


def test_each_handler_endpoint_adds_to_its_agent() -> None:
    plan = _endpoint(_data(10, 1, 100.0, 10.0, 20.0, 10, hits=1, misses=9))
    replan = _endpoint(_data(30, 0, 900.0, 30.0, 50.0, 30, breaker="half_open"), name="replan")
    (planner,) = summarize([], [_service("planner", plan, replan)]).agents
    assert planner.instances == 1
    assert (planner.calls, planner.errors) == (40, 1)
    assert planner.avg_ms == 25.0
    assert planner.p50_ms == 25.0  # (10 * 10 + 30 * 30) / 40
    assert planner.p99_ms == 50.0
    assert planner.breaker == "half_open"
    assert planner.cache_hit_rate == 0.1


def test_agent_without_data_falls_back_to_micro_counters() -> None:
    endpoint = _endpoint(None, num_requests=4, num_errors=1, processing_time=8_000_000)
    (legacy,) = summarize([], [_service("legacy", endpoint, endpoint)]).agents
    assert (legacy.calls, legacy.errors) == (8, 2)  # two endpoints
    assert legacy.avg_ms == 2.0
    assert (legacy.p99_ms, legacy.breaker, legacy.cache_hit_rate) == (None, None, None)


def test_agent_name_from_metadata() -> None:
    service = _service("svc-name", _endpoint(_data(1, 0, 1.0, 1.0, 1.0, 1)))
    service["metadata"] = {"agent": "planner"}
    assert [a.agent for a in summarize([], [service]).agents] == ["planner"]


def test_topology_filter_keeps_its_runs_and_the_agents_they_called() -> None:
    services = [
        _service(a, _endpoint(_data(1, 0, 1.0, 1.0, 1.0, 1))) for a in ("planner", "linter", "docs")
    ]
    summary = summarize(RECORDS, services, topology="docs")
    assert [t.topology for t in summary.topologies] == ["docs"]
    assert [a.agent for a in summary.agents] == ["docs"]
    assert summarize(RECORDS, services, topology="nope").agents == []
