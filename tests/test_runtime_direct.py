"""Direct request/reply through a served agent, and bad input, against a real nats-server."""

from __future__ import annotations

import json

import msgspec
import pytest
from agents_for_tests import echo
from nats.aio.client import Client as NATS

from bus import codec
from bus.client import discover_agents, request_agent
from bus.errors import NoAgentError
from bus.messages import Reply
from bus.settings import Settings
from bus.testing import running_agent
from bus.transport.discovery import gather


async def _dead_letters(nc: NATS, count: int) -> list[tuple[dict[str, str], bytes]]:
    js = nc.jetstream()
    sub = await js.pull_subscribe("bus.dlq.echo", stream="BUS_DLQ")
    msgs = await sub.fetch(count, timeout=5)
    return [(dict(m.headers or {}), m.data) for m in msgs]


async def test_request_returns_typed_output(settings: Settings) -> None:
    async with running_agent(echo, settings):
        reply = await request_agent(settings, "echo", {"name": "ada", "times": 2})
    assert reply.ok
    assert reply.output == {"text": "hello ada hello ada"}
    assert reply.agent == "echo"


async def test_named_handler_is_reached_on_its_own_subject(settings: Settings) -> None:
    async with running_agent(echo, settings):
        reply = await request_agent(settings, "echo", {"name": "ada"}, handler="shout")
    assert reply.output == {"text": "ADA"}


async def test_msgpack_requests_get_msgpack_replies(settings: Settings, nc: NATS) -> None:
    async with running_agent(echo, settings):
        msg = await nc.request("bus.agent.echo", codec.encode({"name": "bo"}), timeout=5)
    reply = msgspec.msgpack.decode(msg.data, type=Reply)
    assert reply.output == {"text": "hello bo"}


async def test_a_request_with_nats_msg_id_is_answered_under_that_task_id(
    settings: Settings, nc: NATS
) -> None:
    async with running_agent(echo, settings):
        msg = await nc.request(
            "bus.agent.echo",
            codec.encode({"name": "bo"}),
            timeout=5,
            headers={"Nats-Msg-Id": "caller-42"},
        )
    reply = msgspec.msgpack.decode(msg.data, type=Reply)
    assert reply.task_id == "caller-42"
    assert reply.output == {"text": "hello bo"}


async def test_schema_invalid_input_names_field_and_is_dead_lettered(
    settings: Settings, nc: NATS
) -> None:
    async with running_agent(echo, settings):
        bad = await request_agent(settings, "echo", {"name": "ada", "times": "two"})
        good = await request_agent(settings, "echo", {"name": "still-serving"})
        letters = await _dead_letters(nc, 1)
    assert bad.error is not None
    assert bad.error.kind == "invalid_input"
    assert "$.times" in bad.error.message
    assert good.output == {"text": "hello still-serving"}
    headers, body = letters[0]
    assert headers["Bus-Reason"] == "invalid_input"
    assert headers["Bus-Agent"] == "echo"
    assert msgspec.json.decode(body) == {"name": "ada", "times": "two"}


async def test_garbage_bytes_get_invalid_input_and_agent_keeps_serving(
    settings: Settings, nc: NATS
) -> None:
    async with running_agent(echo, settings):
        msg = await nc.request("bus.agent.echo", b"\xc1\xff garbage", timeout=5)
        reply = msgspec.msgpack.decode(msg.data, type=Reply)
        after = await request_agent(settings, "echo", {"name": "ok"})
        letters = await _dead_letters(nc, 1)
    assert reply.error is not None
    assert reply.error.kind == "invalid_input"
    assert "MessagePack" in reply.error.message
    assert after.ok
    assert letters[0][1] == b"\xc1\xff garbage"


async def test_oversized_payload_is_invalid_input(settings: Settings, nc: NATS) -> None:
    from bus.runtime.options import ServeOptions
    from bus.runtime.service import AgentService

    service = AgentService(echo, settings, ServeOptions(max_input_bytes=100))
    async with service.running():
        payload = codec.encode({"name": "x" * 500})
        msg = await nc.request("bus.agent.echo", payload, timeout=5)
        reply = msgspec.msgpack.decode(msg.data, type=Reply)
        letters = await _dead_letters(nc, 1)
    assert reply.error is not None
    assert reply.error.kind == "invalid_input"
    assert "exceeds the limit of 100 bytes" in reply.error.message
    assert letters[0][0]["Bus-Reason"] == "invalid_input"


async def test_unknown_agent_is_a_clear_error(settings: Settings) -> None:
    with pytest.raises(NoAgentError, match="no agent named 'ghost'"):
        await request_agent(settings, "ghost", {})


async def test_discovery_counts_instances_and_carries_schemas(settings: Settings) -> None:
    async with running_agent(echo, settings), running_agent(echo, settings):
        agents = await discover_agents(settings, wait=0.3)
    (summary,) = [a for a in agents if a.name == "echo"]
    assert summary.instances == 2
    default = next(e for e in summary.endpoints if e["name"] == "greet")
    assert default["subject"] == "bus.agent.echo"
    schema = msgspec.json.decode(default["metadata"]["input_schema"])
    assert "Greeting" in str(schema)


async def test_discovery_counts_direct_and_durable_calls(settings: Settings, nc: NATS) -> None:
    from bus.messages import Task

    async with running_agent(echo, settings):
        await request_agent(settings, "echo", {"name": "direct"})
        await request_agent(settings, "echo", {"name": 1})  # invalid input: an error
        task = Task(id="d1/0/1", run_id="d1", step="0", agent="echo", input={"name": "durable"})
        await nc.jetstream().publish("bus.task.echo", codec.encode(task))
        sub = await nc.jetstream().pull_subscribe("bus.reply.echo.>", stream="BUS_REPLIES")
        await sub.fetch(1, timeout=10)
        (summary,) = [a for a in await discover_agents(settings, wait=0.3) if a.name == "echo"]
        (raw_stats,) = await gather(nc, "$SRV.STATS.echo", wait=0.3)
    assert (summary.requests, summary.errors) == (3, 1)
    # micro's own fields carry the handler's numbers too, in the micro v1 format
    stats = json.loads(raw_stats)
    assert stats["type"] == "io.nats.micro.v1.stats_response"
    (greet,) = [e for e in stats["endpoints"] if e["name"] == "greet"]
    assert (greet["num_requests"], greet["num_errors"]) == (3, 1)
    assert greet["processing_time"] >= greet["average_processing_time"] > 0
