"""Agents the workflow tests serve, in-process or as `bus agent run workflow_agents:<name>`.

Every handler appends one line per run of its body to ``$BUS_TEST_EFFECTS/<agent>.log``
(the task id), so a test counts effects across processes and crashes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio

from bus import Agent, CallContext, PermanentError, TransientError


def record(kind: str, line: str) -> None:
    root = os.environ.get("BUS_TEST_EFFECTS")
    if root:
        with open(Path(root) / f"{kind}.log", "a") as handle:
            handle.write(line + "\n")


def effects(root: Path, kind: str) -> list[str]:
    path = root / f"{kind}.log"
    return path.read_text().splitlines() if path.exists() else []


inc = Agent("inc", retry=None)


@inc.handler
async def increment(ctx: CallContext) -> dict[str, Any]:
    """``{"n": n}`` -> ``{"n": n + 1}``, keeping other keys; records the task id.

    With ``"sleep": s`` in the input it takes that long, between an ``inc-started-<pid>``
    line and the ``inc`` line (so a test sees which process had which task in hand).
    """
    pause = float((ctx.task.input or {}).get("sleep", 0))
    if pause:
        record(f"inc-started-{os.getpid()}", ctx.task.id)
        await anyio.sleep(pause)
    record("inc", ctx.task.id)
    value = dict(ctx.task.input or {})
    value["n"] = int(value.get("n", 0)) + 1
    return value


tag = Agent("tag", retry=None)


@tag.handler
async def add_tag(ctx: CallContext) -> dict[str, Any]:
    """Adds ``{"tag": "<step path>"}`` to the input."""
    record("tag", ctx.task.id)
    return {**dict(ctx.task.input or {}), "tag": ctx.task.step}


broken = Agent("broken", retry=None)


@broken.handler
async def always_transient(ctx: CallContext) -> dict[str, Any]:
    """Fails transiently every time (the step's retries, then its fallback, take over)."""
    record("broken", ctx.task.id)
    raise TransientError("upstream is down")


refuses = Agent("refuses", retry=None)


@refuses.handler
async def always_permanent(ctx: CallContext) -> dict[str, Any]:
    record("refuses", ctx.task.id)
    raise PermanentError("this input can never work")


backup = Agent("backup", retry=None)


@backup.handler
async def from_backup(ctx: CallContext) -> dict[str, Any]:
    record("backup", ctx.task.id)
    return {"by": "backup", "input": ctx.task.input}


sleepy = Agent("sleepy", retry=None, timeout=120.0)


@sleepy.handler
async def sleep_long(ctx: CallContext) -> dict[str, Any]:
    """Sleeps ``input["seconds"]`` (default 60); a cancelled run interrupts it."""
    record("sleepy-start", ctx.task.id)
    try:
        await anyio.sleep(float((ctx.task.input or {}).get("seconds", 60)))
    except anyio.get_cancelled_exc_class():
        record("sleepy-cancelled", ctx.task.id)
        raise
    record("sleepy-done", ctx.task.id)
    return {"slept": True}
