"""Small agents the runtime tests serve, in-process or as `bus agent run` processes.

Effects go to files under $BUS_TEST_EFFECTS so a test can count handler runs across processes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import anyio
import msgspec

from bus import Agent, CallContext, Event, RetryPolicy, TransientError


class Greeting(msgspec.Struct):
    name: str
    times: int = 1


class Greeted(msgspec.Struct):
    text: str


def record(kind: str, line: str) -> None:
    root = os.environ.get("BUS_TEST_EFFECTS")
    if root:
        with open(Path(root) / f"{kind}.log", "a") as handle:
            handle.write(line + "\n")


echo = Agent("echo", version="1", retry=RetryPolicy(attempts=3, base=0.05, max=0.2))


@echo.handler
async def greet(request: Greeting) -> Greeted:
    record("greet", request.name)
    return Greeted(text=" ".join([f"hello {request.name}"] * request.times))


@echo.handler(name="shout")
async def shout(request: Greeting) -> Greeted:
    return Greeted(text=request.name.upper())


slow = Agent("slow", version="1", timeout=120.0)


@slow.handler
async def work(ctx: CallContext) -> dict[str, object]:
    """First delivery hangs (until killed); later ones answer. Seconds from input['seconds']."""
    data = ctx.task.input or {}
    record("slow-start", f"{ctx.task.id} {ctx.attempt} {os.getpid()}")
    seconds = float(data.get("seconds", 0))
    if data.get("hang_first") and ctx.attempt == 1:
        seconds = 3600
    await anyio.sleep(seconds)
    record("slow-done", f"{ctx.task.id} {ctx.attempt} {os.getpid()}")
    return {"pid": os.getpid(), "attempt": ctx.attempt}


flaky = Agent("flaky", version="1", retry=RetryPolicy(attempts=3, base=0.2, max=1, jitter=False))


@flaky.handler
async def fail(ctx: CallContext) -> None:
    record("flaky", f"{ctx.task.id} {ctx.attempt} {time.time()}")
    raise TransientError("dependency down")


listener = Agent("listener", version="1")


@listener.on_event("code.*")
async def on_code(event: Event) -> None:
    record("events", f"{event.type} {event.id}")
