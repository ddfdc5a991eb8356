"""The agent and the raw nats-py responder the benchmarks run as separate processes."""

from __future__ import annotations

import asyncio
import sys

import msgspec

from bus import Agent


class Ping(msgspec.Struct):
    n: int
    text: str = ""


class Pong(msgspec.Struct):
    n: int
    text: str = ""


echo = Agent("bench-echo", version="1")


@echo.handler
async def pong(ping: Ping) -> Pong:
    return Pong(n=ping.n, text=ping.text)


bare = Agent("bench-bare", version="1", retry=None, timeout=3600.0)


@bare.handler
async def bare_pong(ping: Ping) -> Pong:
    return Pong(n=ping.n, text=ping.text)


async def raw_responder(url: str, subject: str) -> None:
    """The physical limit: a responder written directly on nats-py, echoing the payload."""
    import nats

    nc = await nats.connect(url)

    async def respond(msg: object) -> None:
        await msg.respond(msg.data)  # type: ignore[attr-defined]

    await nc.subscribe(subject, queue="raw", cb=respond)
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(raw_responder(sys.argv[1], sys.argv[2]))
