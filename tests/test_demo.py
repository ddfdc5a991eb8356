"""`bus demo` as a user runs it: real processes, three topologies, nothing left running."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def processes_with(marker: str) -> list[int]:
    """PIDs whose environment carries ``marker`` (every child the demo started inherits it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in environ:
            found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_demo_runs_every_pattern_and_leaves_nothing_behind() -> None:
    marker = f"BUS_DEMO_TEST={uuid.uuid4().hex}"
    env = {**os.environ, marker.split("=")[0]: marker.split("=")[1]}
    env.pop("BUS_NATS_URL", None)
    env["BUS_CONTEXT7_URL"] = "off"  # tests never reach the internet
    result = subprocess.run(
        [sys.executable, "-m", "bus", "demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "4/4 runs completed" in out
    sections = out.split("== ")[1:]
    assert [s.split(" ")[0] for s in sections] == [
        "sequential:",
        "parallel:",
        "conditional",
        "conditional",
    ]
    sequential, parallel, complex_run, simple_run = sections
    assert "✔ 2              tester" in sequential
    for agent in ("linter", "tester", "docs"):
        assert f"{agent:<16} succeeded" in parallel
    # complex code: the deep review ran (the model reviewer fell back to the rule-based one)
    assert "rule-reviewer    succeeded" in complex_run
    assert "skipped: 1.otherwise.0" in complex_run
    # simple code: only its tests
    assert "skipped: 1.then.0, 1.then.1, 1.then.2" in simple_run
    assert "bus stats" in out
    assert processes_with(marker) == []
