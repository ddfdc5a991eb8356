"""``bus stats``: pure aggregation of run records and the agents' NATS micro STATS.

No second store: per-topology numbers come from the run records in ``bus_runs``; per-agent
numbers come from what each agent instance reports in the ``data`` field of its micro STATS
endpoints, built by ``stats_data``::

    {"calls": 120, "errors": 3, "total_ms": 5400.0,        # every mode: direct, durable, event
     "latency_ms": {"p50": 31.0, "p99": 180.0, "window": 120},
     "cache": {"hits": 40, "misses": 80},
     "breaker": {"state": "closed", ...}, "limiter": {...}}

Each endpoint (one per handler) reports its own handler's ``data``; an agent's numbers add
up its endpoints across all its instances. Percentiles use linear interpolation between
closest ranks; merged over several endpoints or instances, ``p50`` is the average weighted by
each window and ``p99`` the largest one (an upper bound: percentiles do not merge exactly).
An endpoint without ``data`` counts micro's own ``num_requests``/``num_errors`` (direct
requests only).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec

TERMINAL = ("completed", "failed", "cancelled")
_BREAKER_RANK = {"closed": 0, "half_open": 1, "half-open": 1, "open": 2}


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``values`` by linear interpolation (0.0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


class LatencyWindow:
    """Recent handler durations in a bounded ring, plus running totals for one agent.

    The ``observe`` middleware records every call; ``stats_data`` reports it in micro STATS.

    Args:
        size: how many recent durations the percentiles are computed over.
    """

    __slots__ = (
        "_ring",
        "cache_hits",
        "cache_misses",
        "calls",
        "errors",
        "total_ms",
    )

    def __init__(self, size: int = 1024) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self._ring: deque[float] = deque(maxlen=size)  # appending drops the oldest, in C
        self.calls = 0
        self.errors = 0
        self.total_ms = 0.0
        self.cache_hits = 0
        self.cache_misses = 0

    def record(self, duration_ms: float, *, ok: bool, cache: str | None = None) -> None:
        """One call: its duration, whether it succeeded, ``"hit"``/``"miss"`` when cached."""
        if not ok:
            self.errors += 1
        if cache == "hit":
            self.cache_hits += 1
        elif cache == "miss":
            self.cache_misses += 1
        self.add(duration_ms)

    def add(self, duration_ms: float) -> None:
        """Count one call and its duration (``record`` without the outcome: a successful,
        uncached call on the hot path needs nothing more)."""
        self.calls += 1
        self.total_ms += duration_ms
        self._ring.append(duration_ms)

    def percentile(self, q: float) -> float:
        return percentile(self._ring, q)

    def __len__(self) -> int:
        return len(self._ring)


def stats_data(
    window: LatencyWindow,
    *,
    breaker: Mapping[str, Any] | None = None,
    limiter: Mapping[str, Any] | None = None,
    cache: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``data`` a handler's micro STATS endpoint reports (see the module docstring).

    Args:
        window: the handler's ``LatencyWindow`` (fed by the ``observe`` middleware).
        breaker: the breaker's snapshot (``{"state": "closed" | "open" | "half_open", ...}``).
        limiter: the rate limiter's snapshot, passed through.
        cache: the dedup cache's ``{"hits": n, "misses": m}``; default: the window's counts.
    """
    data: dict[str, Any] = {
        "calls": window.calls,
        "errors": window.errors,
        "total_ms": round(window.total_ms, 3),
        "latency_ms": {
            "p50": round(window.percentile(0.5), 3),
            "p99": round(window.percentile(0.99), 3),
            "window": len(window),
        },
        "cache": dict(cache)
        if cache is not None
        else {"hits": window.cache_hits, "misses": window.cache_misses},
    }
    if breaker is not None:
        data["breaker"] = dict(breaker)
    if limiter is not None:
        data["limiter"] = dict(limiter)
    return data


# -- the summary ------------------------------------------------------------------------------


class TopologyStats(msgspec.Struct, frozen=True, kw_only=True):
    """Runs of one topology. Durations in seconds, over finished runs.

    ``success_rate`` is completed / (completed + failed): a cancelled run is nobody's failure.
    """

    topology: str
    runs: int
    states: dict[str, int]
    success_rate: float | None
    avg_s: float | None
    p50_s: float | None
    p99_s: float | None


class AgentStats(msgspec.Struct, frozen=True, kw_only=True):
    """Calls of one agent across its live instances. Times in milliseconds."""

    agent: str
    instances: int
    calls: int
    errors: int
    success_rate: float | None
    avg_ms: float | None
    p50_ms: float | None
    p99_ms: float | None
    breaker: str | None
    cache_hit_rate: float | None


class Summary(msgspec.Struct, frozen=True):
    topologies: list[TopologyStats]
    agents: list[AgentStats]


def summarize(
    records: Iterable[Mapping[str, Any]],
    services: Iterable[Mapping[str, Any]],
    *,
    topology: str | None = None,
) -> Summary:
    """Per-topology and per-agent statistics.

    Args:
        records: run records as plain dicts (``topology``, ``state``, ``created_at``,
            ``finished_at``, ``steps: {path: {agent, ...}}``).
        services: decoded ``$SRV.STATS`` responses, one per agent instance.
        topology: keep only this topology, and only the agents its runs called.
    """
    runs = [r for r in records if topology is None or r.get("topology") == topology]
    by_topology: dict[str, list[Mapping[str, Any]]] = {}
    for record in runs:
        by_topology.setdefault(str(record.get("topology", "")), []).append(record)
    topologies = [_topology_stats(name, rs) for name, rs in sorted(by_topology.items())]

    by_agent: dict[str, list[Mapping[str, Any]]] = {}
    for service in services:
        by_agent.setdefault(_agent_name(service), []).append(service)
    if topology is not None:
        called = {
            step.get("agent")
            for record in runs
            for step in (record.get("steps") or {}).values()
            if isinstance(step, Mapping)
        }
        by_agent = {name: s for name, s in by_agent.items() if name in called}
    agents = [_agent_stats(name, ss) for name, ss in sorted(by_agent.items())]
    return Summary(topologies, agents)


def _topology_stats(name: str, records: list[Mapping[str, Any]]) -> TopologyStats:
    states: dict[str, int] = {}
    durations: list[float] = []
    for record in records:
        state = str(record.get("state", "unknown"))
        states[state] = states.get(state, 0) + 1
        created, finished = record.get("created_at"), record.get("finished_at")
        if state in TERMINAL and created is not None and finished is not None:
            durations.append(max(0.0, float(finished) - float(created)))
    decided = states.get("completed", 0) + states.get("failed", 0)
    return TopologyStats(
        topology=name,
        runs=len(records),
        states=dict(sorted(states.items())),
        success_rate=_ratio(states.get("completed", 0), decided),
        avg_s=_round(sum(durations) / len(durations)) if durations else None,
        p50_s=_round(percentile(durations, 0.5)) if durations else None,
        p99_s=_round(percentile(durations, 0.99)) if durations else None,
    )


def _agent_stats(name: str, services: list[Mapping[str, Any]]) -> AgentStats:
    calls = errors = hits = misses = window = 0
    total_ms = p50_weighted = 0.0
    p99: float | None = None
    breaker: str | None = None
    for service in services:
        for endpoint in service.get("endpoints") or []:
            if not isinstance(endpoint, Mapping):
                continue
            data = endpoint.get("data")
            if not isinstance(data, Mapping) or not data:
                # no data from this endpoint: micro's own counters (direct requests only)
                calls += int(endpoint.get("num_requests", 0))
                errors += int(endpoint.get("num_errors", 0))
                total_ms += int(endpoint.get("processing_time", 0)) / 1e6
                continue
            calls += int(data.get("calls", 0))
            errors += int(data.get("errors", 0))
            total_ms += float(data.get("total_ms", 0.0))
            latency = data.get("latency_ms") or {}
            n = int(latency.get("window", 0))
            if n:
                window += n
                p50_weighted += float(latency.get("p50", 0.0)) * n
                p99 = max(p99 or 0.0, float(latency.get("p99", 0.0)))
            cache = data.get("cache") or {}
            hits += int(cache.get("hits", 0))
            misses += int(cache.get("misses", 0))
            breaker = _worse(breaker, (data.get("breaker") or {}).get("state"))
    return AgentStats(
        agent=name,
        instances=len(services),
        calls=calls,
        errors=errors,
        success_rate=_ratio(calls - errors, calls),
        avg_ms=_round(total_ms / calls) if calls else None,
        p50_ms=_round(p50_weighted / window) if window else None,
        p99_ms=_round(p99) if p99 is not None else None,
        breaker=breaker,
        cache_hit_rate=_ratio(hits, hits + misses),
    )


def _worse(current: str | None, state: Any) -> str | None:
    """The breaker state to show for an agent: the worst one among its instances."""
    if state is None:
        return current
    if current is None or _BREAKER_RANK.get(str(state), 0) > _BREAKER_RANK.get(current, 0):
        return str(state)
    return current


def _agent_name(service: Mapping[str, Any]) -> str:
    metadata = service.get("metadata") or {}
    return str(metadata.get("agent") or service.get("name", "?"))


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _round(value: float) -> float:
    return round(value, 3)
