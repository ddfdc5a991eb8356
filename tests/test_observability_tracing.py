"""W3C traceparent: creation, parsing, children."""

from __future__ import annotations

import pytest

from bus.observability import tracing


def test_new_traceparent_has_the_w3c_shape() -> None:
    tp = tracing.new_traceparent()
    version, trace_id, span_id, flags = tp.split("-")
    assert (version, flags) == ("00", "01")
    assert len(trace_id) == 32
    assert len(span_id) == 16
    assert tracing.parse(tp) == (trace_id, span_id)
    assert tracing.new_traceparent(sampled=False).endswith("-00")


def test_new_traceparents_differ() -> None:
    assert len({tracing.trace_id_of(tracing.new_traceparent()) for _ in range(100)}) == 100


def test_child_keeps_trace_id_and_flags_and_changes_span() -> None:
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
    kid = tracing.child(parent)
    assert tracing.trace_id_of(kid) == "4bf92f3577b34da6a3ce929d0e0e4736"
    parsed = tracing.parse(kid)
    assert parsed is not None
    assert parsed[1] != "00f067aa0ba902b7"
    assert kid.endswith("-00")


def test_child_of_garbage_starts_a_new_trace() -> None:
    assert tracing.parse(tracing.child("")) is not None
    assert tracing.parse(tracing.child("nonsense")) is not None


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  # no flags
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero span id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",  # v00 has 4 fields
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # short trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",  # not hex
    ],
)
def test_invalid_traceparents_are_rejected(bad: str) -> None:
    assert tracing.parse(bad) is None
    assert tracing.trace_id_of(bad) == ""


def test_a_future_version_may_append_fields() -> None:
    tp = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future"
    assert tracing.parse(tp) == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
