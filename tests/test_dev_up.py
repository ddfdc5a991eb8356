"""`bus up` as a user runs it: every service its own process, Ctrl-C stops them all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from test_demo import processes_with

from bus.server import free_port

ROOT = Path(__file__).parent.parent


def start_up(tmp_path: Path, marker: str) -> tuple[subprocess.Popen[str], int, set[str]]:
    """`bus up` in the repository, on its own port and store; returns it once all is up."""
    env = {**os.environ, "BUS_UP_TEST": marker, "BUS_CONTEXT7_URL": "off"}
    env.pop("BUS_NATS_URL", None)
    port = free_port()
    args = ["up", "--port", str(port), "--store", str(tmp_path / "store"), "--logs",
            str(tmp_path / "logs")]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "bus", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "Ctrl-C stops" in line:
            break
    return proc, port, {line.split("up: ", 1)[1].strip() for line in lines if "  up: " in line}


def reap(proc: subprocess.Popen[str]) -> None:
    """Kill ``proc`` if a failed test left it running, and close its pipes."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def wait_gone(marker: str, timeout: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := processes_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@pytest.mark.slow
def test_up_starts_everything_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    proc, port, up = start_up(tmp_path, marker)
    try:
        expected = {"coordinator", "planner", "linter", "tester", "reviewer", "rule-reviewer"}
        assert expected | {"docs"} == up
        agents = subprocess.run(
            [sys.executable, "-m", "bus", "agents", "--json", "--nats", f"nats://127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert {a["name"] for a in json.loads(agents.stdout)} == up - {"coordinator"}
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        reap(proc)
    assert processes_with(f"BUS_UP_TEST={marker}") == []


@pytest.mark.slow
def test_a_killed_bus_up_leaves_nothing_behind(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    proc, _, up = start_up(tmp_path, marker)
    try:
        assert "coordinator" in up
        assert len(processes_with(f"BUS_UP_TEST={marker}")) > len(up)  # the server too
        proc.send_signal(signal.SIGKILL)  # no chance to stop anything itself
        proc.wait(10)
    finally:
        reap(proc)
    assert wait_gone(f"BUS_UP_TEST={marker}") == []
