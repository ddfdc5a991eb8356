"""Run agents as processes: serve one until signalled, or spawn replicas."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Sequence

import anyio

from bus.allocator import reuse_read_buffers
from bus.loading import load_agent
from bus.runtime.options import ServeOptions
from bus.runtime.service import AgentService
from bus.settings import Settings


async def serve_until_signalled(service: AgentService) -> None:
    """Serve until SIGINT or SIGTERM, then stop gracefully (finish in-flight, drain)."""
    async with anyio.create_task_group() as tg:

        async def watch_signals() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    service.stop()
                    return

        tg.start_soon(watch_signals)
        await service.serve()
        tg.cancel_scope.cancel()


def run_agent(reference: str, settings: Settings, options: ServeOptions) -> int:
    """Serve one agent in this process until signalled."""
    reuse_read_buffers()
    agent = load_agent(reference)
    service = AgentService(agent, settings, options)
    anyio.run(serve_until_signalled, service)
    return 0


def run_replicas(argv: Sequence[str], replicas: int) -> int:
    """Start ``replicas`` independent ``bus agent run`` processes and wait for all of them.

    SIGINT/SIGTERM are forwarded, so each replica drains on its own.
    """
    children = [
        subprocess.Popen([sys.executable, "-m", "bus", *argv, "--replica-index", str(i)])
        for i in range(replicas)
    ]

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        codes = [child.wait() for child in children]
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return max(codes, default=0)
