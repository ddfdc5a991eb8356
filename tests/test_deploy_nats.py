"""The rendered config on a real nats-server: every forbidden action fails and changes
nothing, every allowed one works — under both JetStream ack-subject formats."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import nats
import nats.errors
import pytest
from deploy_helpers import Session, login, secured_config
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from bus.deploy.render import Bundle, render_bundle
from bus.server import NatsServer, ServerOptions
from bus.settings import Settings
from bus.subjects import Subjects
from bus.testing import nats_server
from bus.transport.connection import connect
from bus.transport.jetstream import ensure_all

S = Subjects()
AGENTS = {"alpha": ["alpha-on_push"], "beta": []}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    return render_bundle(tmp_path_factory.mktemp("rendered"), AGENTS)


@pytest.fixture(params=["v1", "v2"])
def ack_format(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def secured(bundle: Bundle, ack_format: str) -> Iterator[NatsServer]:
    options = ServerOptions(extra_config=secured_config(bundle, ack_v2=ack_format == "v2"))
    with nats_server(options) as server:
        yield server


@pytest.fixture
async def users(secured: NatsServer, bundle: Bundle) -> AsyncIterator[dict[str, Session]]:
    sessions = {s: await login(secured.url, bundle, s) for s in ("admin", "coordinator")}
    await ensure_all(sessions["admin"].client, S)
    for service in ("alpha", "beta", "client"):
        sessions[service] = await login(secured.url, bundle, service)
    yield sessions
    for session in sessions.values():
        await session.close()


async def _dispatch(coordinator: Session, agent: str, body: bytes = b"task") -> None:
    ack = await coordinator.client.jetstream().publish(S.task(agent), body)
    assert ack.stream == S.tasks_stream


async def _pull_one(agent: Session, name: str) -> Msg:
    sub = await agent.client.jetstream().pull_subscribe(
        S.task(name), durable=name, stream=S.tasks_stream
    )
    (msg,) = await sub.fetch(1, timeout=5)
    return msg


async def _stream_messages(admin: Session, stream: str) -> int:
    info = await admin.client.jetstream().stream_info(stream)
    return int(info.state.messages)


def _check_ack_format(msg: Msg, ack_format: str) -> None:
    tokens = (msg.reply or "").split(".")
    assert tokens[:2] == ["$JS", "ACK"]
    if ack_format == "v2":
        assert tokens[4:6] == [S.tasks_stream, "alpha"], msg.reply
    else:
        assert tokens[2:4] == [S.tasks_stream, "alpha"], msg.reply


async def test_agent_fetches_acks_progresses_and_replies(
    users: dict[str, Session], ack_format: str
) -> None:
    alpha, coordinator, admin = users["alpha"], users["coordinator"], users["admin"]
    await _dispatch(coordinator, "alpha", b"one")
    await _dispatch(coordinator, "alpha", b"two")

    msg = await _pull_one(alpha, "alpha")
    _check_ack_format(msg, ack_format)
    await msg.in_progress()
    await msg.nak()
    sub = await alpha.client.jetstream().pull_subscribe_bind(durable="alpha", stream=S.tasks_stream)
    got: list[Msg] = []
    while len(got) < 2:
        got += await sub.fetch(2 - len(got), timeout=5)
    first, second = got
    await first.ack_sync()
    await second.term()
    reply = await alpha.client.jetstream().publish(S.reply("alpha", "run-1", "run-1/0/1"), b"ok")
    dead = await alpha.client.jetstream().publish(S.dlq("alpha"), b"dead")

    assert (reply.stream, dead.stream) == (S.replies_stream, S.dlq_stream)
    record = await alpha.client.jetstream().get_msg(
        S.replies_stream, subject=S.reply("alpha", "run-1", "run-1/0/1"), direct=True
    )
    assert record.data == b"ok"  # its own reply, read back as an idempotency record
    assert await _stream_messages(admin, S.tasks_stream) == 0
    assert alpha.violations() == []
    assert coordinator.violations() == []


async def test_agent_serves_its_direct_subject_in_its_queue_group(
    users: dict[str, Session],
) -> None:
    alpha, admin = users["alpha"], users["admin"]

    async def answer(msg: Msg) -> None:
        await msg.respond(b"pong:" + msg.data)

    await alpha.client.subscribe(S.agent("alpha"), queue="alpha", cb=answer)
    await alpha.client.flush()
    response = None
    with anyio.fail_after(5):
        while response is None:  # until the server routes the new interest
            try:
                response = await admin.client.request(S.agent("alpha"), b"ping", timeout=5)
            except nats.errors.NoRespondersError:
                await anyio.sleep(0.05)
    assert response.data == b"pong:ping"
    assert alpha.violations() == []
    await alpha.subscribe_refused(S.agent("alpha"), queue="other")


async def test_agent_cannot_read_take_ack_or_answer_for_another(
    users: dict[str, Session], ack_format: str
) -> None:
    alpha, beta, admin = users["alpha"], users["beta"], users["admin"]
    await _dispatch(users["coordinator"], "alpha", b"secret")
    held = await _pull_one(alpha, "alpha")
    assert held.reply

    seen = [
        *await beta.subscribe_refused(S.task("alpha")),
        *await beta.subscribe_refused(S.agent("alpha"), queue="alpha"),
        *await beta.subscribe_refused("_INBOX.>"),
        *await beta.subscribe_refused("_INBOX.alpha.>"),
    ]
    await beta.publish_refused(f"$JS.API.CONSUMER.MSG.NEXT.{S.tasks_stream}.alpha", b"1")
    await beta.publish_refused(f"$JS.API.CONSUMER.CREATE.{S.tasks_stream}.beta.{S.task('alpha')}")
    await beta.publish_refused(f"$JS.API.CONSUMER.DURABLE.CREATE.{S.tasks_stream}.beta")
    await beta.publish_refused(held.reply, b"+ACK")
    await beta.publish_refused(held.reply, b"+TERM")
    await beta.publish_refused(S.reply("alpha", "run-1", "run-1/0/1"), b"forged")
    await beta.publish_refused(S.dlq("alpha"), b"forged")
    await beta.publish_refused("$KV.bus_cache.alpha.task.x", b"forged")
    await beta.publish_refused("$JS.API.DIRECT.GET.KV_bus_cache.$KV.bus_cache.alpha.task.x")
    alphas_reply = S.reply("alpha", "run-1", "run-1/0/1")
    await beta.publish_refused(f"$JS.API.DIRECT.GET.{S.replies_stream}.{alphas_reply}")
    await beta.publish_refused(f"$JS.API.STREAM.DELETE.{S.tasks_stream}")
    await beta.publish_refused(f"$JS.API.STREAM.PURGE.{S.tasks_stream}")

    # Nothing changed: alpha's task is still pending on alpha's consumer, nothing was
    # replied, dead-lettered or created, and alpha can still finish its work.
    assert seen == []
    js = admin.client.jetstream()
    consumer = await js.consumer_info(S.tasks_stream, "alpha")
    assert consumer.num_ack_pending == 1
    assert await _stream_messages(admin, S.tasks_stream) == 1
    assert await _stream_messages(admin, S.replies_stream) == 0
    assert await _stream_messages(admin, S.dlq_stream) == 0
    names = [c.name for c in await js.consumers_info(S.tasks_stream)]
    assert names == ["alpha"]
    await held.ack_sync()
    assert await _stream_messages(admin, S.tasks_stream) == 0


async def test_server_checks_the_filter_of_the_one_create_subject_allowed(
    users: dict[str, Session],
) -> None:
    beta, admin = users["beta"], users["admin"]
    body = {"stream_name": S.tasks_stream, "config": {
        "name": "beta", "durable_name": "beta", "ack_policy": "explicit",
        "filter_subject": S.task("alpha"),
    }}  # fmt: skip
    subject = f"$JS.API.CONSUMER.CREATE.{S.tasks_stream}.beta.{S.task('beta')}"
    response = await beta.client.request(subject, json.dumps(body).encode(), timeout=5)
    assert "error" in json.loads(response.data)
    names = [c.name for c in await admin.client.jetstream().consumers_info(S.tasks_stream)]
    assert names == []


async def test_agent_uses_only_its_own_event_consumers(users: dict[str, Session]) -> None:
    alpha, beta, client = users["alpha"], users["beta"], users["client"]
    await client.client.jetstream().publish(S.event("code.pushed"), b"{}")
    sub = await alpha.client.jetstream().pull_subscribe(
        S.event("code.*"), durable="alpha-on_push", stream=S.events_stream
    )
    (event,) = await sub.fetch(1, timeout=5)
    await event.ack_sync()
    await beta.publish_refused(f"$JS.API.CONSUMER.MSG.NEXT.{S.events_stream}.alpha-on_push")
    await beta.publish_refused(f"$JS.API.CONSUMER.CREATE.{S.events_stream}.beta-x")
    assert alpha.violations() == []


async def test_agent_writes_only_its_own_keys(users: dict[str, Session]) -> None:
    alpha, admin = users["alpha"], users["admin"]
    kv = await alpha.client.jetstream().key_value("bus_breakers")
    await kv.put("alpha.abcd", b"closed")
    await alpha.publish_refused("$KV.bus_breakers.beta.abcd", b"open")
    entry = await (await admin.client.jetstream().key_value("bus_breakers")).get("alpha.abcd")
    assert entry.value == b"closed"


async def test_agent_reads_its_own_keys(users: dict[str, Session]) -> None:
    alpha = users["alpha"]
    kv = await alpha.client.jetstream().key_value("bus_cache")
    await kv.put("alpha.val.k", b"v")
    entry = await asyncio.wait_for(kv.get("alpha.val.k"), 3)
    assert entry.value == b"v"


async def test_coordinator_dispatches_consumes_replies_but_cannot_forge_or_delete(
    users: dict[str, Session], ack_format: str
) -> None:
    coordinator, alpha, admin = users["coordinator"], users["alpha"], users["admin"]
    await _dispatch(coordinator, "beta")
    await alpha.client.jetstream().publish(S.reply("alpha", "run-1", "run-1/0/1"), b"ok")
    js = coordinator.client.jetstream()
    sub = await js.pull_subscribe(
        f"{S.prefix}.reply.>", durable=S.coordinator_consumer, stream=S.replies_stream
    )
    (reply,) = await sub.fetch(1, timeout=5)
    assert reply.subject == S.reply("alpha", "run-1", "run-1/0/1")
    await reply.ack_sync()
    runs = await js.key_value("bus_runs")
    revision = await runs.create("run-1", b"pending")
    await runs.update("run-1", b"running", last=revision)
    await coordinator.client.publish(S.run("run-1", "running"), b"")
    assert coordinator.violations() == []

    await coordinator.publish_refused(S.reply("alpha", "run-2", "run-2/0/1"), b"forged")
    await coordinator.publish_refused(f"$JS.API.STREAM.DELETE.{S.tasks_stream}")
    await coordinator.publish_refused("$KV.bus_cache.alpha.task.x", b"forged")
    assert await _stream_messages(admin, S.tasks_stream) == 1
    assert await _stream_messages(admin, S.replies_stream) == 1  # acked, kept as the record


async def test_client_publishes_events_starts_runs_and_reads_state_only(
    users: dict[str, Session],
) -> None:
    client, coordinator, admin = users["client"], users["coordinator"], users["admin"]
    notices: asyncio.Queue[str] = asyncio.Queue()

    async def on_notice(msg: Msg) -> None:
        notices.put_nowait(msg.subject)

    async def on_start(msg: Msg) -> None:
        await msg.respond(b'{"run_id": "run-7"}')

    await coordinator.client.subscribe(S.control("start"), queue="coordinator", cb=on_start)
    await client.client.subscribe(f"{S.prefix}.run.>", cb=on_notice)
    await coordinator.client.flush()
    await client.client.flush()
    ack = await client.client.jetstream().publish(S.event("code.pushed"), b"{}")
    assert ack.stream == S.events_stream
    started = await client.client.request(S.control("start"), b"{}", timeout=5)
    assert json.loads(started.data) == {"run_id": "run-7"}
    await (await coordinator.client.jetstream().key_value("bus_runs")).put("run-7", b"done")
    await coordinator.client.publish(S.run("run-7", "completed"), b"")
    assert await asyncio.wait_for(notices.get(), 5) == S.run("run-7", "completed")
    runs = await client.client.jetstream().key_value("bus_runs")
    assert (await runs.get("run-7")).value == b"done"
    assert client.violations() == []

    await client.publish_refused(S.task("alpha"), b"forged")
    await client.publish_refused(S.reply("alpha", "run-7", "run-7/0/1"), b"forged")
    await client.publish_refused(S.run("run-7", "failed"), b"")
    await client.publish_refused(S.cancel("run-7"), b"")
    await client.publish_refused("$KV.bus_runs.run-7", b"forged")
    await client.publish_refused("$KV.bus_topologies.v.review.x", b"forged")
    await client.publish_refused(f"$JS.API.STREAM.DELETE.{S.events_stream}")
    await client.publish_refused(f"$JS.API.STREAM.CREATE.{S.tasks_stream}")
    await client.subscribe_refused(f"{S.prefix}.task.>")
    await client.subscribe_refused(f"{S.prefix}.event.>")
    assert await _stream_messages(admin, S.tasks_stream) == 0
    assert await _stream_messages(admin, S.replies_stream) == 0
    assert (await runs.get("run-7")).value == b"done"


async def test_client_lists_runs(users: dict[str, Session], ack_format: str) -> None:
    if ack_format == "v2":
        # The permissions allow it; nats-py 2.16's ordered consumer (KV keys/watch) parses
        # only v1 ack subjects (int() of the account hash in Client._process_msg) and its
        # read loop dies, so this cannot run under v2 until nats-py supports it.
        pytest.skip("nats-py 2.16 ordered consumers do not parse v2 ack subjects")
    client, coordinator = users["client"], users["coordinator"]
    await (await coordinator.client.jetstream().key_value("bus_runs")).put("run-8", b"x")
    runs = await client.client.jetstream().key_value("bus_runs")
    assert await asyncio.wait_for(runs.keys(), 5) == ["run-8"]
    assert client.violations() == []


async def test_connections_without_a_credential_are_refused(secured: NatsServer) -> None:
    nc = NATS()
    try:
        with pytest.raises(nats.errors.Error, match=r"(?i)authorization"):
            await nc.connect(secured.url, allow_reconnect=False, connect_timeout=2)
    finally:
        await nc.close()


async def test_bus_connect_reads_the_rendered_settings_file(
    secured: NatsServer, bundle: Bundle
) -> None:
    toml = Path(bundle.out_dir) / "credentials" / "admin" / "admin.toml"
    settings = Settings.from_file(toml).with_overrides(servers=secured.url)
    nc = await connect(settings)
    try:
        await ensure_all(nc, S)
    finally:
        await nc.close()


@pytest.mark.slow
async def test_a_workflow_completes_with_every_process_on_its_own_credential(
    tmp_path: Path,
) -> None:
    from workflow_agents import inc

    from bus.client import publish_event
    from bus.coordinator import Coordinator, workflow_client
    from bus.testing import running_agent
    from bus.workflow import Step, Topology

    bundle = render_bundle(tmp_path, {"inc": []})
    with nats_server(ServerOptions(extra_config=secured_config(bundle))) as server:

        def settings(service: str) -> Settings:
            path = Path(bundle.out_dir) / "credentials" / service / f"{service}.toml"
            return Settings.from_file(path).with_overrides(servers=server.url)

        admin = await login(server.url, bundle, "admin")
        await ensure_all(admin.client, S)  # the deploy step: streams exist before services
        await admin.close()
        async with workflow_client(settings("admin")) as operator:
            # Registering topologies is the coordinator's or an operator's; a client starts
            # registered ones by name.
            await operator.topology(Topology.build("secured", [Step("inc"), Step("inc")]))
        with anyio.fail_after(20):
            async with (
                Coordinator(settings("coordinator")).running(),
                running_agent(inc, settings("inc")),
                workflow_client(settings("client")) as wf,
            ):
                run_id = await wf.start_run("secured", {"n": 0})
                record = await wf.wait_run(run_id, timeout=15)
                duplicate = await publish_event(
                    settings("client"), "code.pushed", {"path": "."}, event_id="e-1"
                )
        assert record.state == "completed"
        assert record.output == {"n": 2}
        assert duplicate is False
