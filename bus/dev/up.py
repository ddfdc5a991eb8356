"""``bus up``: a nats-server (unless one is named), a coordinator and every agent, as processes."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import anyio

from bus.client import connected, discover_agents
from bus.dev.processes import ProcessGroup
from bus.errors import ConfigError, NoAgentError, TransientError
from bus.loading import agents_in_directory
from bus.server import NatsServer, ServerOptions, free_port
from bus.settings import Settings
from bus.subjects import Subjects

DEFAULT_PORT = 4222
READY_TIMEOUT = 60.0


class DevBus:
    """Everything one machine needs to run the project in ``project``.

    Args:
        project: the directory holding ``agents/`` and ``topologies/``.
        settings: where NATS is when ``settings.explicit``; otherwise a server is embedded.
        store: JetStream store of the embedded server (``project/.bus/store`` by default).
        log_dir: where each process logs (``project/.bus/logs`` by default).
        port: client port of the embedded server (4222 when free, else any free port).
        metrics_base: if set, agents and the coordinator serve /metrics from this port up.
    """

    def __init__(
        self,
        project: Path,
        settings: Settings,
        *,
        store: Path | None = None,
        log_dir: Path | None = None,
        port: int | None = None,
        metrics_base: int | None = None,
    ) -> None:
        self.project = project.resolve()
        self.settings = settings
        state = self.project / ".bus"
        self.store = store or state / "store"
        self.log_dir = log_dir or state / "logs"
        self.port = port
        self.metrics_base = metrics_base
        self.server: NatsServer | None = None
        self.agents = [
            (m.agent.name, m.reference) for m in agents_in_directory(self.project / "agents")
        ]
        self.group: ProcessGroup | None = None

    def start(self) -> Settings:
        """Start the server (if embedded), the coordinator and the agents; return the settings
        that reach them."""
        topologies = self.project / "topologies"
        if not topologies.is_dir():
            raise ConfigError(f"no topologies/ directory in {self.project}")
        if not self.settings.explicit:
            port = self.port or (DEFAULT_PORT if _port_free(DEFAULT_PORT) else free_port())
            options = ServerOptions(port=port, store_dir=str(self.store))
            self.server = NatsServer(
                options, log_file=str(self.log_dir / "nats-server.log"), die_with_parent=True
            )
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self.server.start()
            self.settings = self.settings.with_overrides(servers=self.server.url)
        env = {**os.environ, "BUS_NATS_URL": ",".join(self.settings.servers)}
        env["BUS_PREFIX"] = self.settings.prefix
        env.setdefault("BUS_LOG_FORMAT", "json")
        self.group = ProcessGroup(self.log_dir, env, self.project)
        coordinator = ["coordinator", "--topologies", str(topologies)]
        if self.metrics_base is not None:
            coordinator += ["--metrics-port", str(self.metrics_base)]
        self.group.start("coordinator", coordinator)
        for index, (name, reference) in enumerate(self.agents, start=1):
            args = ["agent", "run", reference]
            if self.metrics_base is not None:
                args += ["--metrics-port", str(self.metrics_base + index)]
            self.group.start(name, args)
        return self.settings

    async def wait_ready(self, timeout: float = READY_TIMEOUT) -> list[str]:
        """Wait until the coordinator answers and every agent is discoverable.

        Returns the names that are up. Raises ``ConfigError`` naming a process that died,
        with the end of its log.
        """
        wanted = {name for name, _ in self.agents}
        deadline = time.monotonic() + timeout
        coordinator_up = False
        up: set[str] = set()
        while time.monotonic() < deadline:
            self._check_alive()
            if not coordinator_up:
                coordinator_up = await _coordinator_answers(self.settings)
            found = await discover_agents(self.settings, wait=0.25)
            up = {a.name for a in found} & wanted
            if coordinator_up and up == wanted:
                return ["coordinator", *sorted(up)]
            await anyio.sleep(0.1)
        missing = sorted(wanted - up) + ([] if coordinator_up else ["coordinator"])
        raise ConfigError(f"not up after {timeout:.0f}s: {', '.join(missing)}")

    def _check_alive(self) -> None:
        assert self.group is not None
        for child in self.group.dead():
            raise ConfigError(
                f"{child.name} exited with code {child.process.returncode}: "
                f"{child.log_tail(3)} (log: {child.log})"
            )

    def stop(self) -> None:
        """Stop the agents and the coordinator (they drain), then the server."""
        if self.group is not None:
            self.group.stop()
        if self.server is not None:
            self.server.stop()


async def _coordinator_answers(settings: Settings) -> bool:
    subject = Subjects(settings.prefix).control("start")
    try:
        async with connected(settings, name="bus-up") as wire:
            await wire.request(subject, b"", timeout=1.0)
    except NoAgentError:
        return False
    except TransientError:
        return True  # someone listens; it just did not answer an empty request in time
    return True


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
