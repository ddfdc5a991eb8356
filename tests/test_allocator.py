"""The allocator settings of long-running processes: socket read buffers are reused."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import pytest

from bus.allocator import reuse_read_buffers

READS = 200
HEAP_BLOCKS = 64  # of 64 KiB: heap-sized, 4 MiB in all

# Read small messages from a socket into 256 KiB buffers, as asyncio's transports do, keep
# what arrived, and print how many of those buffers glibc mapped on their own; then free
# 4 MiB of heap blocks and print how much of it went back to the kernel at once.
#
# glibc's accounting (mallinfo2) is read rather than page faults: the kernel's fault counts
# differ between sandboxes. glibc's documented defaults are pinned first because the default
# mmap threshold moves up after the process frees a large mapped block, so an unpinned start
# depends on what ran before.
PROBE = f"""
import ctypes, socket, sys
from bus.allocator import M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, reuse_read_buffers

class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()
    )]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Mallinfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024)
libc.mallopt(M_TRIM_THRESHOLD, 128 * 1024)
applied = reuse_read_buffers() if sys.argv[1] == "tuned" else False

a, b = socket.socketpair()
mapped_before = libc.mallinfo2().hblks
kept = []
for _ in range({READS}):
    a.send(b"x" * 100)
    kept.append(b.recv(262144))
mapped = libc.mallinfo2().hblks - mapped_before

blocks = [libc.malloc(64 * 1024) for _ in range({HEAP_BLOCKS})]
heap = libc.mallinfo2().arena
for block in reversed(blocks):
    libc.free(block)
trimmed = heap - libc.mallinfo2().arena
print(applied, mapped, trimmed)
"""


def _probe(mode: str) -> tuple[bool, int, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_"))}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], env=env, capture_output=True, text=True, check=True
    )
    applied, mapped, trimmed = out.stdout.split()
    return applied == "True", int(mapped), int(trimmed)


def _has_mallinfo2() -> bool:
    try:
        return hasattr(ctypes.CDLL(None), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not _has_mallinfo2(), reason="glibc 2.33 or newer only")
def test_read_sized_buffers_come_from_the_heap_and_freed_heap_is_kept() -> None:
    _, default_mapped, default_trimmed = _probe("default")
    applied, tuned_mapped, tuned_trimmed = _probe("tuned")
    assert applied
    assert default_mapped == READS  # each read buffer mapped on its own
    assert default_trimmed > 0  # freed heap handed back to the kernel at once
    assert tuned_mapped == 0
    assert tuned_trimmed == 0


def test_malloc_tuning_in_the_environment_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert reuse_read_buffers() is False
