"""The allocator settings of long-running processes: socket read buffers are reused."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bus.allocator import reuse_read_buffers

# Read small messages from a socket into 256 KiB buffers, as asyncio's transports do, and
# print the page faults that cost.
READS = 200
CHURN = f"""
import resource, socket, sys
from bus.allocator import reuse_read_buffers
applied = reuse_read_buffers() if sys.argv[1] == "tuned" else False
a, b = socket.socketpair()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range({READS}):
    a.send(b"x" * 100)
    data = b.recv(262144)
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _churn(mode: str) -> tuple[bool, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_"))}
    out = subprocess.run(
        [sys.executable, "-c", CHURN, mode], env=env, capture_output=True, text=True, check=True
    )
    applied, faults = out.stdout.split()
    return applied == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_read_sized_buffers_reuse_memory_instead_of_mapping_it_each_time() -> None:
    _, default_faults = _churn("default")
    applied, tuned_faults = _churn("tuned")
    assert applied
    assert default_faults >= READS  # each buffer mapped anew, and its first page faults
    assert tuned_faults < READS // 10


def test_malloc_tuning_in_the_environment_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert reuse_read_buffers() is False
