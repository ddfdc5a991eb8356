"""Entry point of the ``bus`` command.

Each command group lives in its own module with a ``register(subparsers)`` function; this one
only assembles them and turns our errors into one line on stderr and an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from bus.cli.common import one_error
from bus.errors import BusError

COMMAND_MODULES = (
    "bus.cli.core",  # server, agent run, request, publish, agents
    "bus.cli.coordinator",  # coordinator
    "bus.cli.workflow",  # run, runs, status, watch, cancel, dlq, graph
    "bus.cli.stats",  # stats
    "bus.cli.dev",  # up, demo
    "bus.cli.deploy",  # deploy nats-config
)

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bus",
        description=(
            "agent-bus: an event-driven bus for multi-agent workflows on NATS.\n\n"
            "Quick start:  bus demo\n"
            "Serve an agent:  bus agent run agents.planner:agent --replicas 2\n"
            'Call it:  bus request planner \'{"path": "."}\'\n'
            'Start a workflow:  bus run topologies/sequential.yaml --input \'{"path": "."}\' --wait'
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--log-level",
        default=None,
        choices=["debug", "info", "warning", "error"],
        help="log verbosity (BUS_LOG_LEVEL; default info)",
    )
    parser.add_argument(
        "--log-format",
        default=None,
        choices=["json", "console"],
        help="log format (BUS_LOG_FORMAT; default: console on a terminal, JSON otherwise)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from bus.observability.logs import configure_logging

    configure_logging(level=args.log_level, fmt=args.log_format, environ=dict(os.environ))
    try:
        try:
            return int(args.func(args))
        except BaseExceptionGroup as group:
            # A task group wraps the one error a user should read; unwrap it.
            raise one_error(group) from None
    except BusError as exc:
        print(f"bus {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ValueError | LookupError) else 1
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
