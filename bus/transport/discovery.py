"""Scatter-gather over core NATS: one request, every responder's answer (micro discovery).

``$SRV.PING``, ``$SRV.INFO`` and ``$SRV.STATS`` are answered by every NATS micro service
instance, so the caller cannot know how many replies to expect: it collects for a short time.
"""

from __future__ import annotations

import anyio
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg


async def gather(
    nc: NATS, subject: str, *, wait: float, payload: bytes = b"", limit: int | None = None
) -> list[bytes]:
    """Publish a request on ``subject`` and collect every reply for ``wait`` seconds.

    Returns at once when the server reports that nobody subscribes to ``subject``.

    Args:
        nc: a connected client.
        subject: e.g. ``$SRV.STATS`` or ``$SRV.STATS.planner``.
        wait: how long to collect, in seconds.
        payload: the request body.
        limit: stop early after this many replies.

    Returns:
        The reply payloads in arrival order (empty when nobody answered).
    """
    replies: list[bytes] = []
    done = anyio.Event()

    async def collect(msg: Msg) -> None:
        if msg.headers and msg.headers.get("Status") == "503":
            done.set()  # the server's "no responders": nobody listens, nothing more will come
            return
        replies.append(msg.data)
        if limit is not None and len(replies) >= limit:
            done.set()

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=collect)
    try:
        await nc.publish(subject, payload, reply=inbox)
        await nc.flush()
        with anyio.move_on_after(wait):
            await done.wait()
    finally:
        await sub.unsubscribe()
    return replies[:limit] if limit is not None else replies
