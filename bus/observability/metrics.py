"""The Prometheus metrics of DESIGN.md ("Observability"), on a registry passed in.

======================================  =========  ==============================================
name                                    type       meaning
======================================  =========  ==============================================
``bus_messages_total{agent,outcome}``   counter    handler calls by outcome: ``ok`` or an error
                                                   kind (``transient``, ``permanent``,
                                                   ``timeout``, ``breaker_open``,
                                                   ``rate_limited``, ``invalid_input``)
``bus_handler_seconds{agent}``          histogram  time through the chain, cached calls included
``bus_retries_total{agent}``            counter    retry attempts (redeliveries and in-process)
``bus_breaker_state{agent}``            gauge      0 closed, 1 open, 2 half-open
``bus_ratelimit_wait_seconds{agent}``   histogram  time a call waited for a rate-limit token;
                                                   ``_sum`` is the total seconds waited,
                                                   ``_count`` the calls that waited
``bus_cache_hits_total{agent}``         counter    replies served by the dedup cache
``bus_cache_misses_total{agent}``       counter    cache lookups that ran the handler
``bus_dlq_total{agent,reason}``         counter    tasks sent to the dead-letter queue
``bus_runs_total{topology,state}``      counter    runs that entered ``state`` (``running``,
                                                   ``completed``, ``failed``, ``cancelled``)
``bus_run_seconds{topology}``           histogram  duration of finished runs
``bus_transitions_rejected_total``      counter    replies the coordinator refused, by
``{reason}``                                       ``reason``
======================================  =========  ==============================================

Labels only take bounded values: agent and topology names, error kinds, states and reasons
from small fixed sets. Never a run id or task id.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterator
from typing import ClassVar

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

OUTCOMES = (
    "ok",
    "transient",
    "permanent",
    "timeout",
    "breaker_open",
    "rate_limited",
    "invalid_input",
)
"""Every value of the ``outcome`` label."""

BREAKER_STATES = {"closed": 0, "open": 1, "half_open": 2, "half-open": 2}
"""Values of ``bus_breaker_state``."""

HANDLER_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
RUN_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
               1800.0, 3600.0)  # fmt: skip
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class HandlerCalls:
    """One agent's handler calls: counts by outcome and a latency histogram, lock-free.

    Counted once per call on the hot path, so plain integers instead of prometheus-client
    children (which take a lock per increment and walk the buckets in Python); ``Metrics``
    exposes them as ``bus_messages_total`` and ``bus_handler_seconds``. Calls are counted
    from the event loop's thread; a scrape reads the numbers from another thread, which the
    GIL makes safe.
    """

    __slots__ = ("buckets", "outcomes", "seconds")

    def __init__(self) -> None:
        self.outcomes: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self.buckets = [0] * (len(HANDLER_BUCKETS) + 1)  # the last one is +Inf
        self.seconds = 0.0

    def record(self, outcome: str, seconds: float) -> None:
        """One call that ended with ``outcome`` (``ok`` or an error kind) after ``seconds``."""
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        self.buckets[bisect_left(HANDLER_BUCKETS, seconds)] += 1
        self.seconds += seconds

    def record_ok(self, seconds: float) -> None:
        """``record("ok", seconds)`` without the outcome lookup, for the hot path."""
        self.outcomes["ok"] += 1
        self.buckets[bisect_left(HANDLER_BUCKETS, seconds)] += 1
        self.seconds += seconds


class _HandlerCallsCollector(Collector):
    def __init__(self, calls: dict[str, HandlerCalls]) -> None:
        self._calls = calls

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily("bus_messages", _MESSAGES_HELP, labels=["agent", "outcome"])
        yield HistogramMetricFamily("bus_handler_seconds", _SECONDS_HELP, labels=["agent"])

    def collect(self) -> Iterator[Metric]:
        messages = CounterMetricFamily("bus_messages", _MESSAGES_HELP, labels=["agent", "outcome"])
        seconds = HistogramMetricFamily("bus_handler_seconds", _SECONDS_HELP, labels=["agent"])
        for agent, calls in list(self._calls.items()):
            for outcome, count in list(calls.outcomes.items()):
                messages.add_metric([agent, outcome], count)
            cumulative, buckets = 0, []
            for bound, count in zip(_BOUNDS, list(calls.buckets), strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            seconds.add_metric([agent], buckets, calls.seconds)
        yield messages
        yield seconds


_MESSAGES_HELP = "Handler calls by outcome."
_SECONDS_HELP = "Seconds a call spent in the handler chain."


_BOUNDS = (*(repr(bound) for bound in HANDLER_BUCKETS), "+Inf")


class Metrics:
    """Every bus metric, registered on one ``CollectorRegistry``.

    Tests build ``Metrics(CollectorRegistry())``; a process uses ``Metrics.default()`` (the
    global ``prometheus_client.REGISTRY``, which also carries process and GC metrics).
    Counters and histograms are public attributes for code that needs the raw metric; the
    methods below are the usual way in.

    Args:
        registry: where the metrics are registered (each name once per registry).
    """

    _default: ClassVar[Metrics | None] = None
    _default_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        r = registry
        self._calls: dict[str, HandlerCalls] = {}
        r.register(_HandlerCallsCollector(self._calls))
        self.retries = Counter("bus_retries_total", "Retry attempts.", ["agent"], registry=r)
        self.breaker_state = Gauge(
            "bus_breaker_state",
            "Circuit breaker state: 0 closed, 1 open, 2 half-open.",
            ["agent"],
            registry=r,
        )
        self.ratelimit_wait = Histogram(
            "bus_ratelimit_wait_seconds",
            "Seconds calls waited for a rate-limit token.",
            ["agent"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.cache_hits = Counter(
            "bus_cache_hits_total", "Replies served from the dedup cache.", ["agent"], registry=r
        )
        self.cache_misses = Counter(
            "bus_cache_misses_total", "Dedup cache misses.", ["agent"], registry=r
        )
        self.dlq = Counter(
            "bus_dlq_total", "Tasks sent to the dead-letter queue.", ["agent", "reason"],
            registry=r,
        )  # fmt: skip
        self.runs = Counter(
            "bus_runs_total", "Runs that entered a state.", ["topology", "state"], registry=r
        )
        self.run_seconds = Histogram(
            "bus_run_seconds",
            "Duration of finished runs in seconds.",
            ["topology"],
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.transitions_rejected = Counter(
            "bus_transitions_rejected_total",
            "Replies rejected by the workflow state machine.",
            ["reason"],
            registry=r,
        )

    @classmethod
    def default(cls) -> Metrics:
        """The process-wide instance on ``prometheus_client.REGISTRY`` (made on first use)."""
        with cls._default_lock:
            if cls._default is None:
                cls._default = cls(REGISTRY)
            return cls._default

    # -- agents ---------------------------------------------------------------------------
    def calls(self, agent: str) -> HandlerCalls:
        """Where ``agent``'s handler calls are counted (``bus_messages_total``,
        ``bus_handler_seconds``)."""
        found = self._calls.get(agent)
        if found is None:
            found = self._calls[agent] = HandlerCalls()
        return found

    def init_agent(self, agent: str) -> None:
        """Create an agent's series at zero, so rates exist before the first call."""
        self.calls(agent)
        self.retries.labels(agent)
        self.breaker_state.labels(agent).set(0)
        self.ratelimit_wait.labels(agent)
        self.cache_hits.labels(agent)
        self.cache_misses.labels(agent)

    def set_breaker_state(self, agent: str, state: str | int) -> None:
        """Record a breaker state: ``closed``/``open``/``half_open`` (or 0/1/2)."""
        value = state if isinstance(state, int) else BREAKER_STATES[state]
        self.breaker_state.labels(agent).set(value)

    def ratelimit_waited(self, agent: str, seconds: float) -> None:
        self.ratelimit_wait.labels(agent).observe(seconds)

    def dead_lettered(self, agent: str, reason: str) -> None:
        """A task went to the DLQ (``reason``: ``max_deliver``, ``invalid_input``, ...)."""
        self.dlq.labels(agent, reason).inc()

    # -- runs (coordinator) ---------------------------------------------------------------
    def run_changed(self, topology: str, state: str, seconds: float | None = None) -> None:
        """A run entered ``state``; ``seconds`` is its duration once terminal, else ``None``.

        With ``transition_rejected`` this makes ``Metrics`` a ``CoordinatorObserver``.
        """
        self.runs.labels(topology, state).inc()
        if seconds is not None:
            self.run_seconds.labels(topology).observe(seconds)

    def transition_rejected(self, reason: str) -> None:
        """A reply was refused (``late``, ``duplicate``, ``unknown_run``, ``forged``, ...)."""
        self.transitions_rejected.labels(reason).inc()
