"""glibc allocator settings for long-running bus processes (agents, coordinators).

asyncio reads a socket into a new 256 KiB buffer every time (its selector transport's
``max_size``) and shrinks it to what arrived. glibc serves an allocation that large with
``mmap``, so every read of every NATS connection cost an ``mmap``, an ``mremap``, a
``munmap`` and at least one page fault: 22 page faults per three-step run in the
coordinator, about a tenth of its CPU when runs come one at a time. With the mmap threshold
above that size, and the heap not trimmed after each such free, the buffer memory is reused.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 20  # bytes: above asyncio's read buffer, within NATS' default max payload
TRIM_THRESHOLD = 8 << 20  # bytes of freed heap a process keeps rather than give back at once


def reuse_read_buffers() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; returns whether it did.

    Nothing changes outside Linux with glibc, or when the environment already tunes malloc
    (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_`` or ``GLIBC_TUNABLES``).
    """
    if not sys.platform.startswith("linux"):
        return False
    if any(name in os.environ for name in _USER_TUNING):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process runs on
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mmap_set = int(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) == 1
    trim_set = int(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)) == 1
    return mmap_set and trim_set


_USER_TUNING = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")
