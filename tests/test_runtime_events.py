"""Event handlers: pub/sub across agents, work sharing across one agent's replicas."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from agents_for_tests import listener

from bus.client import publish_event
from bus.settings import Settings
from bus.testing import running_agent
from bus.transport.connection import connect


@pytest.fixture
def effects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BUS_TEST_EFFECTS", str(tmp_path))
    return tmp_path


def handled(effects: Path) -> list[str]:
    path = effects / "events.log"
    return path.read_text().splitlines() if path.exists() else []


async def test_each_event_is_handled_once_by_an_agent_with_two_replicas(
    settings: Settings, effects: Path
) -> None:
    async with running_agent(listener, settings), running_agent(listener, settings):
        for i in range(10):
            await publish_event(settings, "code.pushed", {"n": i}, event_id=f"e{i}")
        await publish_event(settings, "docs.changed", {}, event_id="other")  # not subscribed
        with anyio.fail_after(10):
            while len(handled(effects)) < 10:
                await anyio.sleep(0.05)
        # Nothing left to deliver and nothing redelivered: no replica can still run one twice.
        nc = await connect(settings)
        try:
            with anyio.fail_after(10):
                while True:
                    info = await nc.jetstream().consumer_info("BUS_EVENTS", "listener-on_code")
                    if info.num_pending == 0 and info.num_ack_pending == 0:
                        break
                    await anyio.sleep(0.05)
        finally:
            await nc.close()
        assert info.num_redelivered == 0
    assert sorted(handled(effects)) == sorted(f"code.pushed e{i}" for i in range(10))


async def test_republished_event_id_is_deduplicated(settings: Settings, effects: Path) -> None:
    async with running_agent(listener, settings):
        first = await publish_event(settings, "code.merged", {}, event_id="same")
        second = await publish_event(settings, "code.merged", {}, event_id="same")
        with anyio.fail_after(10):
            while not handled(effects):
                await anyio.sleep(0.05)
    assert (first, second) == (False, True)
    assert handled(effects) == ["code.merged same"]
