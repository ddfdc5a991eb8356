"""The agent and the raw nats-py responder the benchmarks run as separate processes."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import msgspec

from bus import Agent, BreakerPolicy, RateLimit


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


full = Agent(
    "bench-full",
    version="1",
    breaker=BreakerPolicy(window=100, min_calls=50),
    rate_limit=RateLimit(rate=1_000_000, burst=100_000),
)


@full.handler
async def full_pong(ping: Ping) -> Pong:
    return Pong(n=ping.n, text=ping.text)


async def bare_responder(url: str, subject: str) -> None:
    """A bare handler on nats-py: decode the input, call the handler, encode a Reply."""
    import nats

    from bus import codec
    from bus.messages import Task, ok_reply

    nc = await nats.connect(url)
    decode = msgspec.msgpack.Decoder(Ping).decode

    async def respond(msg: object) -> None:
        ping = decode(msg.data)  # type: ignore[attr-defined]
        output = await bare_pong(ping)
        reply = ok_reply(Task(id="t", agent="bench-bare"), codec.to_builtins(output))
        await msg.respond(codec.encode(reply))  # type: ignore[attr-defined]

    await nc.subscribe(subject, queue="bare", cb=respond)
    await asyncio.Event().wait()


nochain = Agent("bench-nochain", version="1")


@nochain.handler
async def nochain_pong(ping: Ping) -> Pong:
    return Pong(n=ping.n, text=ping.text)


def serve_without_chain(url: str) -> None:
    """``nochain`` served by the bus runtime with an empty chain: the handler adapter alone.

    The difference to ``echo`` (the same runtime with the default chain) is what the chain
    costs. Only a benchmark does this: a handler without the chain has no error boundary,
    timeout, metrics or logs.
    """
    import anyio

    from bus.middleware.handler import handler_adapter
    from bus.observability.logs import configure_logging
    from bus.runtime import handlers
    from bus.runtime.options import ServeOptions
    from bus.runtime.process import serve_until_signalled
    from bus.runtime.service import AgentService
    from bus.settings import Settings

    def adapter_only(spec: Any, **_: Any) -> Any:
        return handler_adapter(spec)

    handlers.chain_for = adapter_only  # type: ignore[assignment]
    configure_logging(level="warning")
    settings = Settings(servers=(url,), explicit=True)
    service = AgentService(nochain, settings, ServeOptions(durable=False))
    anyio.run(serve_until_signalled, service)


if __name__ == "__main__":
    if sys.argv[2:] == ["nochain"]:
        serve_without_chain(sys.argv[1])
    else:
        responder = bare_responder if sys.argv[3:] == ["bare"] else raw_responder
        asyncio.run(responder(sys.argv[1], sys.argv[2]))
