"""Read whole KV buckets and streams: every live value, live updates, a stream's messages.

The coordinator recovers runs and lists them with these; ``bus dlq`` reads dead letters.
nats-py's errors become ours here.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import msgspec
import nats.errors
import nats.js.errors

from bus.errors import TransientError
from bus.transport.wire import Wire

_INITIAL_WAIT = 10.0
_AFTER_MARKER = 1.0


class Stored(msgspec.Struct, frozen=True):
    """One message read back from a stream or bucket."""

    seq: int
    subject: str
    data: bytes
    headers: dict[str, str]


async def kv_values(wire: Wire, bucket: str) -> AsyncIterator[tuple[str, bytes, int]]:
    """Every live key of ``bucket`` with its value and revision, read in one pass.

    The pass ends at the entry that says nothing more is pending (``delta == 0``). nats-py's
    end-of-initial-values marker is not trusted: its watcher can put the marker before
    entries that were already delivered but not yet handed to its callback, which ended a
    scan early. Delete markers are read (and skipped) so that the last entry is seen.

    Raises:
        TransientError: the bucket could not be read.
    """
    try:
        kv = await wire.js.key_value(bucket)
        if (await kv.status()).values == 0:
            return
        watcher = await kv.watchall()
    except (nats.errors.Error, OSError, TimeoutError) as exc:
        raise TransientError(f"cannot read bucket {bucket}: {exc}") from None
    wait = _INITIAL_WAIT
    try:
        while True:
            try:
                entry = await watcher.updates(timeout=wait)  # type: ignore[no-untyped-call]
            except nats.errors.TimeoutError:
                if wait == _AFTER_MARKER:  # the marker was right: the last one was skipped
                    return
                raise TransientError(f"reading bucket {bucket} stalled") from None
            if entry is None:
                # Early or not, the entries' delta decides; only if none comes (the last
                # message was one nats-py skips, a server marker of an unknown reason) does
                # the marker end the pass.
                wait = _AFTER_MARKER
                continue
            if entry.value is not None and entry.operation not in ("DEL", "PURGE"):
                yield entry.key, entry.value, int(entry.revision or 0)
            if not entry.delta:
                return
    finally:
        with contextlib.suppress(nats.errors.Error, OSError):
            await watcher.stop()  # type: ignore[no-untyped-call]


async def kv_updates(wire: Wire, bucket: str) -> AsyncIterator[tuple[str, bytes | None, int]]:
    """Every current value of ``bucket`` (deleted keys come as ``None``), then live changes.

    Never ends by itself; cancel the consuming task to stop it.
    """
    try:
        kv = await wire.js.key_value(bucket)
        watcher = await kv.watchall()
    except (nats.errors.Error, OSError, TimeoutError) as exc:
        raise TransientError(f"cannot watch bucket {bucket}: {exc}") from None
    try:
        async for entry in watcher:
            if entry is None:
                continue
            value = None if entry.operation in ("DEL", "PURGE") else entry.value
            yield entry.key, value, int(entry.revision or 0)
    finally:
        with contextlib.suppress(nats.errors.Error, OSError):
            await watcher.stop()  # type: ignore[no-untyped-call]


async def stream_messages(
    wire: Wire, stream: str, subject: str = ">", *, limit: int = 10_000
) -> list[Stored]:
    """Up to ``limit`` messages of ``stream`` on ``subject``, oldest first.

    Raises:
        TransientError: the stream could not be read.
    """
    out: list[Stored] = []
    seq = 1
    try:
        info = await wire.js.stream_info(stream)
        seq = max(seq, int(info.state.first_seq or 1))
        last = int(info.state.last_seq or 0)
        while seq <= last and len(out) < limit:
            try:
                raw = await wire.js.get_msg(stream, seq, subject=subject, next=True)
            except nats.js.errors.NotFoundError:
                break
            found = int(raw.seq or seq)
            out.append(Stored(found, raw.subject or "", raw.data or b"", dict(raw.headers or {})))
            seq = found + 1
    except nats.js.errors.NotFoundError:
        return out
    except (nats.errors.Error, OSError, TimeoutError) as exc:
        raise TransientError(f"cannot read stream {stream}: {exc}") from None
    return out
