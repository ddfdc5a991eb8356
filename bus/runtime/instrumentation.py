"""What an agent process reports about itself: Prometheus metrics, micro STATS data, /healthz."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import TaskStatus
from prometheus_client import CollectorRegistry

from bus.middleware.context import Middleware
from bus.middleware.defaults import ResilienceSet
from bus.observability.http import serve_http
from bus.observability.metrics import Metrics
from bus.observability.middleware import observe
from bus.observability.stats import LatencyWindow, stats_data


class Instrumentation:
    """Metrics registry, per-handler latency windows and resilience snapshots of one process.

    Args:
        registry: where the metrics live (a fresh one per process by default; tests pass
            their own and read it with ``get_sample_value``).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self._windows: dict[str, LatencyWindow] = {}
        self._resilience: dict[str, ResilienceSet] = {}

    @classmethod
    def create(cls) -> Instrumentation:
        return cls()

    def outer_middleware(self, agent: str, handler: str) -> list[Middleware]:
        """The outermost middleware of a handler's chain (context, logs, metrics)."""
        self.metrics.init_agent(agent)
        window = self._windows.setdefault(handler, LatencyWindow())
        return [observe(self.metrics, window=window)]

    def watch(self, handler: str, resilience: ResilienceSet) -> None:
        self._resilience[handler] = resilience

    def on_dead_letter(self, agent: str, reason: str) -> None:
        self.metrics.dead_lettered(agent, reason)

    def stats_data(self, handler: str) -> dict[str, Any]:
        """The ``data`` of an endpoint in this instance's micro STATS."""
        window = self._windows.get(handler)
        resilience = self._resilience.get(handler)
        if window is None:
            return {}
        return stats_data(
            window,
            breaker=resilience.breaker.snapshot() if resilience and resilience.breaker else None,
            limiter=resilience.limiter.snapshot() if resilience and resilience.limiter else None,
            cache=resilience.cache.snapshot() if resilience and resilience.cache else None,
        )

    async def serve_http(
        self,
        port: int,
        ready: Callable[[], bool],
        *,
        task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """``/metrics`` and ``/healthz`` on ``port`` until cancelled."""
        await serve_http(self.registry, port=port, ready=ready, task_status=task_status)
