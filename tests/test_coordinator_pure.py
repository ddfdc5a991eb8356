"""The coordinator's pure parts: event decoding, run ids, step notices, the deadline index."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import msgspec
import pytest

from bus import codec
from bus.coordinator.events import read_event, run_id_for_event
from bus.coordinator.notices import run_changed, step_changes
from bus.coordinator.timers import DeadlineIndex
from bus.messages import Reply
from bus.workflow import Step, Topology, apply_reply, start_run

TOPOLOGY = Topology.build("t", [Step("a", timeout=10), Step("b")])


def read(subject: str, data: bytes, headers: dict[str, str] | None, seq: int = 7):  # type: ignore[no-untyped-def]
    return read_event(subject, data, headers, prefix="bus", stream_seq=seq)


def test_binary_mode_takes_attributes_from_headers() -> None:
    event = read(
        "bus.event.code.pushed",
        b'{"path": "."}',
        {"Content-Type": "application/json", "ce-id": "e1", "ce-type": "x.y", "ce-source": "ci"},
    )
    assert (event.type, event.id, event.source, event.data) == ("x.y", "e1", "ci", {"path": "."})


def test_binary_mode_defaults_type_from_subject_and_id_from_msg_id_or_sequence() -> None:
    event = read("bus.event.code.pushed", codec.encode({"a": 1}), {"Nats-Msg-Id": "m1"})
    assert (event.type, event.id, event.data) == ("code.pushed", "m1", {"a": 1})
    again = read("bus.event.code.pushed", b"plain text", None, seq=42)
    assert (again.id, again.data) == ("seq-42", "plain text")
    assert read("bus.event.x", b"", None).data is None


def test_structured_mode_reads_the_whole_event() -> None:
    body = msgspec.json.encode({"type": "code.pushed", "id": "s1", "data": {"k": 2}})
    event = read("bus.event.other", body, {"Content-Type": "application/cloudevents+json"})
    assert (event.type, event.id, event.data) == ("code.pushed", "s1", {"k": 2})
    no_id = read("bus.event.z", b'{"data": 1}', {"Content-Type": "application/cloudevents+json"})
    assert (no_id.type, no_id.id) == ("z", "seq-7")


def test_structured_mode_rejects_garbage() -> None:
    from bus.errors import InvalidInputError

    with pytest.raises(InvalidInputError):
        read("bus.event.z", b"[1, 2]", {"Content-Type": "application/cloudevents+json"})


def test_run_ids_from_events_are_stable_tokens() -> None:
    one = run_id_for_event("e1", "review")
    assert one == run_id_for_event("e1", "review")
    assert one != run_id_for_event("e1", "other") != run_id_for_event("e2", "review")
    assert one.isalnum()


def test_step_changes_name_each_changed_step_once() -> None:
    started, _ = start_run(TOPOLOGY, run_id="r", input=1, now=100.0)
    first = step_changes(None, started, 100.0)
    assert [(n.path, n.state) for n in first] == [("0", "dispatched")]  # pending ones are quiet
    reply = Reply(task_id="r/0/1", status="ok", output=2)
    after, _ = apply_reply(TOPOLOGY, started, reply, sender="a", now=101.0)
    changed = step_changes(started, after, 101.0)
    assert [(n.path, n.state, n.agent) for n in changed] == [
        ("0", "succeeded", "a"),
        ("1", "dispatched", "b"),
    ]
    assert step_changes(after, after, 102.0) == []
    assert run_changed(None, started)
    assert not run_changed(started, after)


async def test_deadline_index_orders_updates_and_only_brings_offers_forward() -> None:
    index = DeadlineIndex()
    record, _ = start_run(TOPOLOGY, run_id="r", input=1, now=100.0)
    index.update(record)  # step 0 is due at 110
    assert index.next_at() == 110.0
    stale = msgspec.structs.replace(
        record,
        steps={**record.steps, "0": msgspec.structs.replace(record.steps["0"], deadline=120)},
    )
    index.offer(stale)  # later than known: ignored
    assert index.next_at() == 110.0
    assert index.pop_due(109.9) == []
    assert index.pop_due(110.0) == ["r"]
    assert index.next_at() is None
    assert len(index) == 0
    index.offer(stale)  # unknown run: taken
    assert index.next_at() == 120.0
    finished = msgspec.structs.replace(record, state="completed")
    index.update(finished)
    assert index.next_at() is None


async def test_deadline_index_wakes_a_waiter_for_an_earlier_deadline() -> None:
    index = DeadlineIndex()
    record, _ = start_run(TOPOLOGY, run_id="r", input=1, now=100.0)
    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(index.wait, 30.0)
            await anyio.lowlevel.checkpoint()
            index.update(record)
