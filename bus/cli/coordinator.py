"""``bus coordinator``: run one coordinator replica (any number may run at once)."""

from __future__ import annotations

import argparse
import os
import signal
from collections.abc import Callable
from functools import partial
from typing import Any

import anyio

from bus.cli.common import add_connection_flags, one_error, run_async, settings_from
from bus.errors import ConfigError

RAW = argparse.RawDescriptionHelpFormatter

EPILOG_COORDINATOR = """examples:
  bus coordinator --topologies topologies/       register every file there, then serve
  bus coordinator --metrics-port 9200             /metrics and /healthz on port 9200
  bus coordinator --replicas-of-streams 3         on a 3-node JetStream cluster

Run as many replicas as you like: they share the durable consumers and change run records
only by compare-and-set, so there is no leader to elect. SIGTERM stops fetching, finishes
the messages in hand and drains.
"""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    _register_coordinator(sub)


def _register_coordinator(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "coordinator",
        help="run a workflow coordinator replica",
        description="Turn events and `bus run` requests into durable workflow runs: dispatch "
        "steps to agents, apply their replies, enforce timeouts, retries and fallbacks.",
        epilog=EPILOG_COORDINATOR,
        formatter_class=RAW,
    )
    p.add_argument("--topologies", metavar="DIR", help="register every topology file in DIR")
    p.add_argument(
        "--replicas-of-streams",
        type=int,
        metavar="N",
        help="replicas of the streams and buckets it creates (BUS_REPLICAS; default 1)",
    )
    p.add_argument("--concurrency", type=int, default=256, help="messages handled at once")
    p.add_argument(
        "--ack-wait",
        type=float,
        default=10.0,
        help="seconds before a message held by a dead replica is redelivered (default 10)",
    )
    p.add_argument(
        "--retention",
        type=float,
        default=7.0,
        metavar="DAYS",
        help="days a finished run's record is kept (default 7; 0 keeps every record)",
    )
    p.add_argument("--metrics-port", type=int, help="serve /metrics and /healthz on this port")
    add_connection_flags(p)
    p.set_defaults(func=cmd_coordinator)


def cmd_coordinator(args: argparse.Namespace) -> int:
    from bus.allocator import reuse_read_buffers
    from bus.coordinator.service import Coordinator, CoordinatorOptions
    from bus.workflow.loader import load_directory

    reuse_read_buffers()

    if args.topologies:
        load_directory(args.topologies)  # a broken file fails here, before connecting
    settings = settings_from(args)
    if args.replicas_of_streams is not None:
        if args.replicas_of_streams < 1:
            raise ConfigError("--replicas-of-streams must be at least 1")
        settings = settings.with_overrides(replicas=args.replicas_of_streams)
    if args.retention < 0:
        raise ConfigError("--retention must be 0 (keep) or a number of days")
    options = CoordinatorOptions(
        topologies=args.topologies,
        concurrency=args.concurrency,
        ack_wait=args.ack_wait,
        retention=args.retention * 24 * 3600 if args.retention else None,
    )
    port = args.metrics_port
    if port is None and os.environ.get("BUS_METRICS_PORT"):
        port = int(os.environ["BUS_METRICS_PORT"])

    async def main() -> int:
        observer = None
        registry = None
        if port is not None:
            from prometheus_client import CollectorRegistry

            from bus.observability.metrics import Metrics

            registry = CollectorRegistry()
            observer = Metrics(registry)
        coordinator = Coordinator(settings, options, observer=observer)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_stop_on_signal, coordinator.stop)
                if registry is not None:
                    from bus.observability.http import serve_http

                    await tg.start(
                        partial(serve_http, registry, port=port, ready=lambda: coordinator.ready)
                    )
                await coordinator.serve()
                tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise one_error(group) from None
        return 0

    return run_async(main)


async def _stop_on_signal(stop: Callable[[], None]) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            stop()
            return
