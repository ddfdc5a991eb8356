"""The workflow coordinator: turns events and ``bus run`` into durable runs and moves their
state machine only on valid replies.

I/O around the pure interpreter of ``bus.workflow``: ``store`` (run records by
compare-and-set), ``registry`` (topologies by name and version), ``dispatch`` (tasks and
notices), ``engine`` (every change to a run), ``inbox`` (replies, events, requests),
``timers`` (deadlines and delayed retries), ``service`` (one replica), ``client`` (the side the
CLI and programs use).
"""

from bus.coordinator.client import CoordinatorUnavailableError, WorkflowClient, workflow_client
from bus.coordinator.engine import UnknownRunError
from bus.coordinator.notices import StepNotice
from bus.coordinator.observer import CoordinatorObserver, NoObserver
from bus.coordinator.registry import UnknownTopologyError
from bus.coordinator.service import Coordinator, CoordinatorOptions

__all__ = [
    "Coordinator",
    "CoordinatorObserver",
    "CoordinatorOptions",
    "CoordinatorUnavailableError",
    "NoObserver",
    "StepNotice",
    "UnknownRunError",
    "UnknownTopologyError",
    "WorkflowClient",
    "workflow_client",
]
