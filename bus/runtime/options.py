"""How one agent process serves: the knobs of ``bus agent run``."""

from __future__ import annotations

import msgspec

MiB = 1024 * 1024


class ServeOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Process-level serving options (the agent's ``Options`` configure its handlers).

    Attributes:
        concurrency: tasks in flight at once in this process (``None``: the agent's own).
        ack_wait: seconds JetStream waits for an ack before redelivering a task elsewhere;
            handlers running longer send ``in_progress`` every half of it.
        fetch_wait: seconds one fetch waits for tasks.
        drain_timeout: seconds SIGTERM waits for in-flight work before giving up.
        max_input_bytes: payloads larger than this are answered ``invalid_input``.
        metrics_port: serve ``/metrics`` and ``/healthz`` on this port (``None``: off).
        durable: consume ``bus.task.<agent>``; off serves direct requests only.
    """

    concurrency: int | None = None
    ack_wait: float = 30.0
    fetch_wait: float = 1.0
    drain_timeout: float = 30.0
    max_input_bytes: int = MiB
    metrics_port: int | None = None
    durable: bool = True
