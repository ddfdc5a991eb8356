"""Workflow commands: ``coordinator``, ``run``, ``runs``, ``status``, ``watch``, ``cancel``,
``dlq list``, ``dlq replay`` and ``graph``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from bus.cli.common import (
    add_connection_flags,
    add_output_flags,
    parse_json_arg,
    print_json,
    run_async,
    settings_from,
)
from bus.cli.progress import ProgressView, clock, describe, duration, notice_line, run_json
from bus.coordinator.client import WorkflowClient, is_topology_file, workflow_client
from bus.errors import ConfigError
from bus.workflow.records import RunRecord
from bus.workflow.states import RUN_TRANSITIONS

if TYPE_CHECKING:
    Sub = argparse._SubParsersAction[Any]
RAW = argparse.RawDescriptionHelpFormatter

EPILOG_RUN = """examples:
  bus run topologies/sequential.yaml --input '{"path": "."}' --wait
  bus run review --input @input.json              a registered topology, by name
  bus run review --input - --wait --json < in.json

A file is registered first (its content hash is its version); a running run keeps the
version it started with. Exit status with --wait: 0 completed, 1 failed or cancelled.
"""

EPILOG_RUNS = """examples:
  bus runs                      every run, oldest first
  bus runs --state failed       only failed ones
  bus runs --json | jq '.[] | select(.state == "running") | .run_id'
"""

EPILOG_WATCH = """examples:
  bus watch                     every run's step and run changes, until Ctrl-C
  bus watch 4f1c...             one run, until it finishes
  bus watch --json              one JSON notice per line
"""

EPILOG_DLQ = """examples:
  bus dlq list                  every dead letter: id, agent, reason, attempts, error
  bus dlq list --agent tester
  bus dlq replay 42             publish dead letter 42 again to its task subject
"""

EPILOG_GRAPH = """examples:
  bus graph topologies/conditional.yaml > flow.mmd     no NATS needed for a file
  bus graph review                                       a registered topology
"""


def register(sub: Sub) -> None:
    _register_run(sub)
    _register_inspect(sub)
    _register_dlq(sub)
    _register_graph(sub)


def _parser(sub: Sub, name: str, help: str, epilog: str, description: str = "") -> Any:
    return sub.add_parser(
        name, help=help, description=description or help, epilog=epilog, formatter_class=RAW
    )


def _with_client(args: argparse.Namespace, body: Callable[[WorkflowClient], Awaitable[int]]) -> int:
    async def main() -> int:
        async with workflow_client(settings_from(args)) as client:
            return await body(client)

    return run_async(main)


# -- run ---------------------------------------------------------------------------------


def _register_run(sub: Sub) -> None:
    p = _parser(
        sub,
        "run",
        "start a workflow run (with --wait, follow it live)",
        EPILOG_RUN,
        "Start a run of TOPOLOGY (a registered name or a topology file) on a coordinator.",
    )
    p.add_argument("topology", metavar="TOPOLOGY", help="registered name or .yaml/.toml file")
    p.add_argument(
        "--input", default="null", metavar="JSON", help="run input: JSON, @file or - (stdin)"
    )
    p.add_argument("--wait", action="store_true", help="show step progress, then the result")
    p.add_argument("--timeout", type=float, help="with --wait: give up after this many seconds")
    p.add_argument("--id", dest="run_id", default="", help="run id (makes the start idempotent)")
    add_output_flags(p)
    add_connection_flags(p)
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    data = parse_json_arg(args.input)

    async def body(client: WorkflowClient) -> int:
        run_id = await client.start_run(args.topology, data, run_id=args.run_id)
        if not args.wait:
            if args.json:
                print_json({"run_id": run_id})
            else:
                print(run_id)
            return 0
        view = ProgressView(sys.stderr, redraw=sys.stderr.isatty())
        try:
            record = await client.wait_run(run_id, on_update=view.update, timeout=args.timeout)
        except TimeoutError:
            raise ConfigError(
                f"run {run_id} still running after {args.timeout:g}s (see `bus status {run_id}`)"
            ) from None
        return _print_result(record, args.json)

    return _with_client(args, body)


def _print_result(record: RunRecord, as_json: bool) -> int:
    if as_json:
        print_json(run_json(record))
    elif record.state == "completed":
        print_json(record.output)
    if record.state == "completed":
        return 0
    reason = f": {record.error.kind}: {record.error.message}" if record.error else ""
    print(f"run {record.run_id} {record.state}{reason}", file=sys.stderr)
    return 1


# -- runs, status, watch, cancel ---------------------------------------------------------


def _register_inspect(sub: Sub) -> None:
    p = _parser(sub, "runs", "list workflow runs", EPILOG_RUNS)
    p.add_argument("--state", choices=sorted(RUN_TRANSITIONS), help="only runs in this state")
    add_output_flags(p)
    add_connection_flags(p)
    p.set_defaults(func=cmd_runs)

    p = _parser(sub, "status", "show one run and its steps", "example:\n  bus status 4f1c...\n")
    p.add_argument("run_id", metavar="RUN")
    add_output_flags(p)
    add_connection_flags(p)
    p.set_defaults(func=cmd_status)

    p = _parser(sub, "watch", "follow runs live (one run, or all)", EPILOG_WATCH)
    p.add_argument("run_id", metavar="RUN", nargs="?", help="only this run (until it ends)")
    add_output_flags(p)
    add_connection_flags(p)
    p.set_defaults(func=cmd_watch)

    p = _parser(
        sub,
        "cancel",
        "cancel a run (its agents stop the handlers)",
        "example:\n  bus cancel 4f1c...\n",
    )
    p.add_argument("run_id", metavar="RUN")
    add_output_flags(p)
    add_connection_flags(p)
    p.set_defaults(func=cmd_cancel)


def cmd_runs(args: argparse.Namespace) -> int:
    async def body(client: WorkflowClient) -> int:
        runs = await client.list_runs(args.state)
        if args.json:
            print_json([run_json(r) for r in runs])
            return 0
        if not runs:
            print("no runs")
            return 0
        print(f"{'RUN':<35} {'TOPOLOGY':<16} {'STATE':<10} {'STARTED':<9} TOOK")
        for r in runs:
            started = clock(r.created_at)
            print(f"{r.run_id:<35} {r.topology:<16} {r.state:<10} {started:<9} {duration(r)}")
        return 0

    return _with_client(args, body)


def cmd_status(args: argparse.Namespace) -> int:
    async def body(client: WorkflowClient) -> int:
        record = await client.get_run(args.run_id)
        if args.json:
            print_json(run_json(record))
        else:
            print("\n".join(describe(record)))
        return 0

    return _with_client(args, body)


def cmd_watch(args: argparse.Namespace) -> int:
    async def body(client: WorkflowClient) -> int:
        def show(notice: Any) -> None:
            if args.json:
                print_json(notice)
            else:
                print(notice_line(notice), flush=True)

        if args.run_id:
            record = await client.wait_run(args.run_id, on_update=show)
            return 0 if record.state == "completed" else 1
        async with client.notices() as notices:
            async for notice in notices:
                show(notice)
        return 0

    return _with_client(args, body)


def cmd_cancel(args: argparse.Namespace) -> int:
    async def body(client: WorkflowClient) -> int:
        record = await client.cancel_run(args.run_id)
        if args.json:
            print_json(run_json(record))
        else:
            print(f"run {record.run_id} {record.state}")
        return 0

    return _with_client(args, body)


# -- dlq, graph --------------------------------------------------------------------------


def _register_dlq(sub: Sub) -> None:
    dlq = sub.add_parser(
        "dlq",
        help="list and replay dead letters",
        description="Dead letters: tasks agents gave up on, with the reason.",
        epilog=EPILOG_DLQ,
        formatter_class=RAW,
    )
    actions = dlq.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)
    p = _parser(actions, "list", "list dead letters", EPILOG_DLQ)
    p.add_argument("--agent", help="only this agent's")
    add_output_flags(p)
    add_connection_flags(p)
    p.set_defaults(func=cmd_dlq_list)
    p = _parser(actions, "replay", "publish a dead letter again and remove it", EPILOG_DLQ)
    p.add_argument("id", metavar="ID", type=int, help="the id `bus dlq list` shows")
    add_output_flags(p)
    add_connection_flags(p)
    p.set_defaults(func=cmd_dlq_replay)


def cmd_dlq_list(args: argparse.Namespace) -> int:
    async def body(client: WorkflowClient) -> int:
        letters = await client.dlq_list(args.agent)
        if args.json:
            print_json(letters)
            return 0
        if not letters:
            print("no dead letters")
            return 0
        print(f"{'ID':>6} {'AGENT':<16} {'REASON':<15} {'TRIES':>5}  TASK / ERROR")
        for d in letters:
            print(f"{d.id:>6} {d.agent:<16} {d.reason:<15} {d.attempts:>5}  {d.task_id or '-'}")
            if d.error:
                print(f"{'':>46}{d.error[:200]}")
        return 0

    return _with_client(args, body)


def cmd_dlq_replay(args: argparse.Namespace) -> int:
    async def body(client: WorkflowClient) -> int:
        letter = await client.dlq_replay(args.id)
        if args.json:
            print_json(letter)
        else:
            print(f"replayed dead letter {letter.id} to {letter.subject}")
        return 0

    return _with_client(args, body)


def _register_graph(sub: Sub) -> None:
    p = _parser(sub, "graph", "print a topology as a Mermaid flowchart", EPILOG_GRAPH)
    p.add_argument("topology", metavar="TOPOLOGY", help="registered name or .yaml/.toml file")
    add_connection_flags(p)
    p.set_defaults(func=cmd_graph)


def cmd_graph(args: argparse.Namespace) -> int:
    from bus.workflow.graph import to_mermaid
    from bus.workflow.loader import load_topology

    if is_topology_file(args.topology):
        sys.stdout.write(to_mermaid(load_topology(args.topology)))
        return 0

    async def body(client: WorkflowClient) -> int:
        sys.stdout.write(to_mermaid(await client.registry.get(args.topology)))
        return 0

    return _with_client(args, body)
