"""Start named child processes, each logging to its own file, and stop them all cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import msgspec

from bus.server import die_with_parent


class Child(msgspec.Struct):
    """One child process and where its output goes."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])


class ProcessGroup:
    """The children of ``bus up``: started together, stopped together, none left behind.

    Args:
        log_dir: where each child's stdout and stderr go (``<name>.log``).
        env: the environment every child gets.
        cwd: the children's working directory (agent modules are imported from it).
    """

    def __init__(self, log_dir: Path, env: Mapping[str, str], cwd: Path) -> None:
        self.log_dir = log_dir
        self.env = dict(env)
        self.cwd = cwd
        self.children: list[Child] = []
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, bus_args: Sequence[str]) -> Child:
        """Start ``python -m bus BUS_ARGS...`` as child ``name``."""
        log = self.log_dir / f"{name}.log"
        with open(log, "ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "bus", *bus_args],
                cwd=self.cwd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Own process group: a Ctrl-C in the terminal reaches only the supervisor,
                # which then stops the children in order.
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        child = Child(name, process, log)
        self.children.append(child)
        return child

    def dead(self) -> list[Child]:
        return [c for c in self.children if not c.alive]

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM every child (they drain), wait up to ``grace`` seconds, then SIGKILL."""
        for child in self.children:
            if child.alive:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in self.children:
            remaining = max(0.1, deadline - time.monotonic())
            try:
                child.process.wait(remaining)
            except subprocess.TimeoutExpired:
                os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait()
