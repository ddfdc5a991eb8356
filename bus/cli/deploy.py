"""``bus deploy nats-config``: render a least-privilege nats-server config and credentials."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bus.cli.common import add_output_flags, print_json
from bus.errors import ConfigError

EPILOG = """examples:
  bus deploy nats-config --agents agents --topologies topologies --out deploy/rendered
  bus deploy nats-config --agent planner --agent linter --out out --auth password
  bus deploy nats-config --agents agents --out out --replicas 3 --mount-path /etc/bus

Writes OUT/nats-server.conf, OUT/auth.conf and OUT/credentials/<service>/ (a settings file
<service>.toml for BUS_CONFIG, and with NKeys the seed <service>.nk), every secret with mode
0600. Running it again keeps the credentials already in OUT and adds the missing ones.
"""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    group = sub.add_parser(
        "deploy",
        help="deployment helpers (least-privilege NATS config)",
        description="Deployment helpers.",
    )
    commands = group.add_subparsers(dest="deploy_command", metavar="COMMAND", required=True)
    p = commands.add_parser(
        "nats-config",
        help="render nats-server config with one least-privilege user per service",
        description=(
            "Render a nats-server config (one account, one user per agent, the coordinator, "
            "a client and an admin, each allowed only its own subjects) and the credentials."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--agents", metavar="DIR", help="directory of agent modules to import")
    p.add_argument(
        "--agent",
        metavar="NAME",
        action="append",
        default=[],
        help="an agent name, without importing anything (repeatable)",
    )
    p.add_argument("--topologies", metavar="DIR", help="also every agent these topologies name")
    p.add_argument("--out", metavar="DIR", required=True, help="output directory")
    p.add_argument(
        "--auth", choices=["nkey", "password"], default="nkey", help="credential kind (nkey)"
    )
    p.add_argument(
        "--replicas", type=int, default=1, help="stream and bucket replicas (3 on a cluster)"
    )
    p.add_argument("--prefix", default="bus", help="subject prefix (default 'bus')")
    p.add_argument(
        "--mount-path",
        metavar="PATH",
        help="where each service's credentials directory is mounted (default: where written)",
    )
    p.add_argument(
        "--sync",
        choices=["always", "default"],
        default="default",
        help="'always' fsyncs every write: survives power loss, costs throughput",
    )
    p.add_argument("--store", metavar="DIR", default="/data", help="JetStream store directory")
    p.add_argument("--server-tls-cert", metavar="FILE", help="server certificate (server's path)")
    p.add_argument("--server-tls-key", metavar="FILE", help="server key (server's path)")
    p.add_argument("--server-tls-ca", metavar="FILE", help="CA for client certificates (mTLS)")
    add_output_flags(p)
    p.set_defaults(func=cmd_nats_config)


def cmd_nats_config(args: argparse.Namespace) -> int:
    from bus.deploy.discover import agents_in_dir, agents_in_topologies
    from bus.deploy.render import ServerConfig, render_bundle
    from bus.subjects import Subjects, check_agent_name

    if args.replicas < 1:
        raise ConfigError("--replicas must be at least 1")
    if bool(args.server_tls_cert) != bool(args.server_tls_key):
        raise ConfigError("--server-tls-cert and --server-tls-key go together")
    agents: dict[str, list[str]] = {}
    if args.agents:
        agents.update(agents_in_dir(args.agents))
    names = list(args.agent)
    if args.topologies:
        names += sorted(agents_in_topologies(args.topologies))
    for name in names:
        try:
            agents.setdefault(check_agent_name(name), [])
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    if not agents:
        raise ConfigError("no agents: give --agents DIR, --agent NAME or --topologies DIR")
    bundle = render_bundle(
        args.out,
        agents,
        auth=args.auth,
        subjects=Subjects(args.prefix),
        replicas=args.replicas,
        mount_path=args.mount_path,
        server=ServerConfig(
            store_dir=args.store,
            sync_always=args.sync == "always",
            tls_cert=args.server_tls_cert,
            tls_key=args.server_tls_key,
            tls_ca=args.server_tls_ca,
        ),
    )
    if args.json:
        print_json(bundle)
        return 0
    out = sys.stdout
    out.write(f"nats-server config: {bundle.server_config}\n")
    out.write(f"users and permissions: {bundle.auth_config}\n")
    for service, files in bundle.services.items():
        out.write(f"  {service}: {', '.join(files)}\n")
    out.write("secrets are mode 0600; mount credentials/<service>/ into that service only\n")
    return 0
