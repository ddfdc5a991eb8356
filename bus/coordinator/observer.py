"""The coordinator's hook for metrics: it reports, an observer counts.

The observability layer passes an object with these methods (Prometheus counters and
histograms); the default does nothing, so the coordinator never depends on a metrics library.
"""

from __future__ import annotations

from typing import Protocol


class CoordinatorObserver(Protocol):
    """What the coordinator reports. Every method must be cheap and must not raise."""

    def transition_rejected(self, reason: str) -> None:
        """A reply or request was refused (``bus_transitions_rejected_total{reason}``)."""

    def run_changed(self, topology: str, state: str, seconds: float | None) -> None:
        """A run reached ``state`` (``bus_runs_total{topology,state}``); ``seconds`` is its
        duration once terminal (``bus_run_seconds{topology}``), else ``None``."""


class NoObserver:
    """The default observer: counts nothing."""

    __slots__ = ()

    def transition_rejected(self, reason: str) -> None:
        return None

    def run_changed(self, topology: str, state: str, seconds: float | None) -> None:
        return None
