"""Development commands: ``bus up`` and ``bus demo``."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

from bus.cli.common import add_connection_flags, run_async, settings_from
from bus.settings import Settings

EPILOG_UP = """examples:
  bus up                        everything in this directory: agents/ and topologies/
  bus up --nats nats://nats:4222   use that NATS instead of starting one
then, in another terminal:
  bus run topologies/sequential.yaml --input '{"path": "examples/sample_project"}' --wait
"""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    up = sub.add_parser(
        "up",
        help="dev: nats-server + a coordinator + every agent in agents/, each its own process",
        description=(
            "Start a whole bus on this machine: nats-server with JetStream (unless --nats or "
            "BUS_NATS_URL names one), a coordinator for topologies/, and every agent found in "
            "agents/ as its own process. Ctrl-C stops all of them cleanly."
        ),
        epilog=EPILOG_UP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    up.add_argument("dir", nargs="?", default=".", help="project directory (default: .)")
    up.add_argument("--store", metavar="DIR", help="JetStream store (default DIR/.bus/store)")
    up.add_argument("--logs", metavar="DIR", help="process logs (default DIR/.bus/logs)")
    up.add_argument("--port", type=int, help="embedded server port (default 4222 if free)")
    up.add_argument("--metrics-base", type=int, help="serve /metrics from this port upwards")
    add_connection_flags(up)
    up.set_defaults(func=cmd_up)

    demo = sub.add_parser(
        "demo",
        help="the main job: bus up, the three workflow patterns on real code, stats, clean stop",
        description=(
            "Start nats-server, a coordinator and every reference agent as separate processes "
            "on a temporary store; run the sequential, parallel and conditional topologies on "
            "examples/sample_project (or --path) with a live view of their steps; print the "
            "results and `bus stats`; stop everything."
        ),
    )
    demo.add_argument("--path", help="run the topologies on this code instead of the sample")
    demo.add_argument("--dir", default=".", help="project with agents/ and topologies/ (default .)")
    add_connection_flags(demo)
    demo.set_defaults(func=cmd_demo)


def cmd_up(args: argparse.Namespace) -> int:
    from bus.dev.up import DevBus

    dev = DevBus(
        Path(args.dir),
        settings_from(args),
        store=Path(args.store) if args.store else None,
        log_dir=Path(args.logs) if args.logs else None,
        port=args.port,
        metrics_base=args.metrics_base,
    )
    try:
        settings = dev.start()
        up = run_async(dev.wait_ready)
        print(f"bus up: NATS at {','.join(settings.servers)}")
        for name in up:
            print(f"  up: {name}")
        print(f"logs in {dev.log_dir}; export BUS_NATS_URL={settings.servers[0]}; Ctrl-C stops")
        sys.stdout.flush()
        _wait_for_signal_or_death(dev)
    finally:
        print("bus up: stopping...", file=sys.stderr)
        dev.stop()
    return 0


def _wait_for_signal_or_death(dev: Any) -> None:
    """Return on SIGINT/SIGTERM, or when a child process exits on its own."""
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    # Blocked, the signals wait in the kernel for sigtimedwait below; the children were
    # started before, so they keep their own handling.
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        while signal.sigtimedwait(stop_signals, 0.5) is None:
            dead = dev.group.dead() if dev.group else []
            if dead:
                print(f"bus up: {dead[0].name} exited: {dead[0].log_tail(3)}", file=sys.stderr)
                return
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)


def cmd_demo(args: argparse.Namespace) -> int:
    from bus.cli.stats import collect, render
    from bus.dev.demo import run_demo

    async def stats(settings: Settings) -> str:
        return "bus stats\n" + render(await collect(settings, topology=None, wait=0.3))

    project = Path(args.dir)
    path = Path(args.path).resolve() if args.path else None
    return run_async(
        lambda: run_demo(project, settings_from(args), sys.stdout, path=path, render_stats=stats)
    )
