"""Step failures and time: retries with backoff, fallback, timeouts, rejected replies, cancel."""

from __future__ import annotations

from typing import Any

import pytest
from msgspec.structs import replace

from bus.errors import PermanentError, TopologyError, TransientError
from bus.messages import ErrorInfo, Reply, Task, error_reply, ok_reply
from bus.workflow import (
    RejectedTransitionError,
    RunRecord,
    Step,
    StepRetry,
    Topology,
    abandoned,
    apply_reply,
    apply_timeouts,
    cancel_run,
    next_deadline,
    parallel,
    start_run,
)
from bus.workflow.simulate import simulate

RETRY = StepRetry(attempts=3, base=0.5, max=0.8)


def error(task: Task, kind: str, retry_after: float | None = None) -> Reply:
    return error_reply(task, ErrorInfo(kind, f"{kind}!", retry_after=retry_after))  # type: ignore[arg-type]


def test_retryable_error_waits_for_its_backoff_then_dispatches_a_new_attempt() -> None:
    topology = Topology.build("r", Step("a", retry=RETRY))
    record, (task,) = start_run(topology, run_id="r", input="in", now=100.0)
    record, tasks = apply_reply(topology, record, error(task, "transient"), sender="a", now=101.0)
    step = record.steps["0"]
    assert tasks == []
    assert (step.state, step.retry_at, step.error) == (
        "retrying",
        101.5,
        ErrorInfo("transient", "transient!"),
    )
    assert next_deadline(record) == 101.5
    assert apply_timeouts(topology, record, now=101.4) == (record, [])
    record, (second,) = apply_timeouts(topology, record, now=101.5)
    assert (second.id, second.attempt, second.input, second.agent) == ("r/0/2", 2, "in", "a")
    assert record.steps["0"].state == "dispatched"
    record, _ = apply_reply(topology, record, error(second, "timeout"), sender="a", now=102.0)
    assert record.steps["0"].retry_at == 102.8  # 0.5 * 2 = 1.0, capped at max 0.8
    record, (third,) = apply_timeouts(topology, record, now=103.0)
    record, tasks = apply_reply(
        topology, record, error(third, "rate_limited"), sender="a", now=104.0
    )
    assert (record.state, record.error) == ("failed", ErrorInfo("rate_limited", "rate_limited!"))
    assert record.steps["0"].attempts == 3


def test_retry_after_from_the_error_overrides_the_backoff() -> None:
    topology = Topology.build("r", Step("a", retry=RETRY))
    record, (task,) = start_run(topology, run_id="r", input=0, now=0.0)
    record, _ = apply_reply(topology, record, error(task, "transient", 7.0), sender="a", now=1.0)
    assert record.steps["0"].retry_at == 8.0


def test_a_zero_delay_retry_is_dispatched_at_once() -> None:
    topology = Topology.build("r", Step("a", retry=StepRetry(attempts=2, base=0.0)))
    record, (task,) = start_run(topology, run_id="r", input=0, now=0.0)
    record, tasks = apply_reply(topology, record, error(task, "breaker_open"), sender="a", now=1.0)
    assert [t.id for t in tasks] == ["r/0/2"]


@pytest.mark.parametrize("kind", ["permanent", "invalid_input"])
def test_permanent_errors_are_not_retried_and_go_to_the_fallback(kind: str) -> None:
    topology = Topology.build("f", [Step("a", retry=RETRY, fallback="b"), Step("z")])
    record, (task,) = start_run(topology, run_id="r", input="in", now=0.0)
    record, tasks = apply_reply(topology, record, error(task, kind), sender="a", now=1.0)
    assert [(t.id, t.agent, t.input) for t in tasks] == [("r/0/2", "b", "in")]
    step = record.steps["0"]
    assert (step.agent, step.fallback, step.fallback_at, step.state) == ("b", True, 2, "dispatched")
    with pytest.raises(RejectedTransitionError) as caught:  # the old attempt cannot win now
        apply_reply(topology, record, ok_reply(task, "late"), sender="a", now=2.0)
    assert caught.value.reason == "stale_attempt"
    with pytest.raises(RejectedTransitionError) as caught:  # only b may answer attempt 2
        apply_reply(topology, record, ok_reply(tasks[0], "x"), sender="a", now=2.0)
    assert caught.value.reason == "forged"
    record, tasks = apply_reply(topology, record, ok_reply(tasks[0], "fb"), sender="b", now=2.0)
    assert [(t.agent, t.input) for t in tasks] == [("z", "fb")]


def test_retries_then_fallback_then_its_own_retries() -> None:
    calls: list[str] = []

    def flaky(name: str) -> Any:
        def handle(value: Any) -> Any:
            calls.append(name)
            if name == "a" or len(calls) < 5:
                raise TransientError("busy")
            return f"{name}:{value}"

        return handle

    topology = Topology.build("f", Step("a", retry=RETRY, fallback="b"))
    record = simulate(topology, "in", {"a": flaky("a"), "b": flaky("b")})
    assert calls == ["a", "a", "a", "b", "b"]
    assert (record.state, record.output) == ("completed", "b:in")
    assert record.steps["0"].attempts == 5
    assert record.steps["0"].task_id == "sim/0/5"


def test_a_failed_fallback_fails_the_run() -> None:
    def broken(value: Any) -> Any:
        raise PermanentError("no")

    topology = Topology.build("f", [Step("a", fallback="b"), Step("z")])
    record = simulate(topology, 0, {"a": broken, "b": broken, "z": str})
    assert record.state == "failed"
    assert record.error == ErrorInfo("permanent", "no", "PermanentError")
    assert {p: s.state for p, s in record.steps.items()} == {"0": "failed", "1": "skipped"}


def test_an_error_reply_without_details_is_permanent() -> None:
    topology = Topology.build("e", Step("a", retry=RETRY))
    record, (task,) = start_run(topology, run_id="r", input=0, now=0.0)
    bare = Reply(task_id=task.id, status="error")
    record, _ = apply_reply(topology, record, bare, sender="a", now=1.0)
    assert record.state == "failed"
    assert record.error == ErrorInfo("permanent", "error reply without details")


def test_timeout_covers_the_retries_then_the_fallback_gets_its_own() -> None:
    topology = Topology.build("t", Step("a", timeout=10, retry=RETRY, fallback="b"))
    record, (task,) = start_run(topology, run_id="r", input="in", now=0.0)
    assert task.deadline == 10.0
    assert next_deadline(record) == 10.0
    record, _ = apply_reply(topology, record, error(task, "transient"), sender="a", now=5.0)
    record, (second,) = apply_timeouts(topology, record, now=5.5)
    assert second.deadline == 10.0  # a retry keeps the step's deadline
    assert apply_timeouts(topology, record, now=9.9) == (record, [])
    record, (fallback,) = apply_timeouts(topology, record, now=10.0)
    assert (fallback.agent, fallback.id, fallback.deadline) == ("b", "r/0/3", 20.0)
    assert record.steps["0"].error == ErrorInfo(
        "timeout", "step 0 (a) ran past its 10s timeout", "StepTimeout"
    )
    with pytest.raises(RejectedTransitionError) as caught:
        apply_reply(topology, record, ok_reply(second, "too late"), sender="a", now=11.0)
    assert caught.value.reason == "stale_attempt"
    record, tasks = apply_timeouts(topology, record, now=20.0)
    assert tasks == []
    assert record.state == "failed"
    assert record.error == ErrorInfo(
        "timeout", "step 0 (b) ran past its 10s timeout", "StepTimeout"
    )
    with pytest.raises(RejectedTransitionError) as caught:
        apply_reply(topology, record, ok_reply(fallback, "x"), sender="b", now=21.0)
    assert caught.value.reason == "terminal"


def test_no_retry_is_scheduled_past_the_deadline() -> None:
    topology = Topology.build("t", Step("a", timeout=1, retry=RETRY))
    record, (task,) = start_run(topology, run_id="r", input="in", now=0.0)
    record, _ = apply_reply(topology, record, error(task, "transient"), sender="a", now=0.9)
    assert record.state == "failed"


def test_a_step_with_nobody_answering_times_out() -> None:
    topology = Topology.build("t", [Step("ghost", timeout=3), Step("z")])
    record = simulate(topology, 0, {"z": str}, now=50.0)
    assert record.state == "failed"
    assert record.finished_at == 53.0
    assert record.steps["0"].state == "failed"


def test_a_reply_after_a_timeout_is_late() -> None:
    topology = Topology.build("t", [parallel(Step("slow", timeout=1), Step("b")), Step("z")])
    record, tasks = start_run(topology, run_id="r", input=0, now=0.0)
    record, _ = apply_timeouts(topology, record, now=1.0)
    assert record.state == "failed"
    fresh, _ = start_run(topology, run_id="r", input=0, now=0.0)
    timed_out = replace(
        fresh,
        steps={
            **fresh.steps,
            "0.0": replace(
                fresh.steps["0.0"],
                state="retrying",
                error=ErrorInfo("timeout", "", "StepTimeout"),
                fallback=True,
                fallback_at=2,
            ),
        },
    )
    with pytest.raises(RejectedTransitionError) as caught:
        apply_reply(topology, timed_out, ok_reply(tasks[0], 1), sender="slow", now=2.0)
    assert caught.value.reason == "late"


def rejected(
    topology: Topology, record: RunRecord, reply: Reply, sender: str
) -> RejectedTransitionError:
    with pytest.raises(RejectedTransitionError) as caught:
        apply_reply(topology, record, reply, sender=sender, now=9.0)
    return caught.value


def test_every_rejection_reason_and_the_record_stays_as_it_was() -> None:
    topology = Topology.build("x", [Step("a"), Step("b")])
    record, (task,) = start_run(topology, run_id="run", input=0, now=0.0)
    before = record

    def reason(reply: Reply, sender: str = "a") -> str:
        return rejected(topology, record, reply, sender).reason

    assert reason(ok_reply(replace(task, id="other/0/1"), 1)) == "unknown_step"
    assert reason(ok_reply(replace(task, id="run/7/1"), 1)) == "unknown_step"
    assert reason(ok_reply(replace(task, id="run/0/2"), 1)) == "unknown_step"
    assert reason(ok_reply(replace(task, id="run/0/x"), 1)) == "unknown_step"
    assert reason(ok_reply(replace(task, id="run/1/1"), 1), "b") == "late"  # not dispatched
    assert reason(ok_reply(task, 1), "b") == "forged"
    assert record == before
    record, (second,) = apply_reply(topology, record, ok_reply(task, 1), sender="a", now=1.0)
    assert reason(ok_reply(task, 2)) == "duplicate"
    assert reason(error_reply(task, ErrorInfo("permanent"))) == "duplicate"
    record, _ = apply_reply(topology, record, ok_reply(second, 2), sender="b", now=2.0)
    assert record.state == "completed"
    assert reason(ok_reply(second, 3), "b") == "terminal"
    assert reason(ok_reply(replace(task, id="nonsense"), 3), "x") == "terminal"


def test_a_second_reply_while_retrying_is_a_duplicate() -> None:
    topology = Topology.build("x", Step("a", retry=RETRY))
    record, (task,) = start_run(topology, run_id="run", input=0, now=0.0)
    record, _ = apply_reply(topology, record, error(task, "transient"), sender="a", now=1.0)
    assert rejected(topology, record, ok_reply(task, 1), "a").reason == "duplicate"


def test_cancel() -> None:
    topology = Topology.build("c", [parallel(Step("a", timeout=5), Step("b")), Step("z")])
    record, tasks = start_run(topology, run_id="r", input=0, now=0.0)
    record, _ = apply_reply(topology, record, ok_reply(tasks[0], 1), sender="a", now=1.0)
    cancelled = cancel_run(record, now=2.0)
    assert abandoned(record, cancelled) == ["r/0.1/1"]
    assert (cancelled.state, cancelled.finished_at) == ("cancelled", 2.0)
    assert {p: s.state for p, s in cancelled.steps.items()} == {
        "0.0": "succeeded",
        "0.1": "skipped",
        "1": "skipped",
    }
    assert next_deadline(cancelled) is None
    assert apply_timeouts(topology, cancelled, now=100.0) == (cancelled, [])
    assert rejected(topology, cancelled, ok_reply(tasks[1], 2), "b").reason == "terminal"
    with pytest.raises(RejectedTransitionError) as caught:
        cancel_run(cancelled, now=3.0)
    assert caught.value.reason == "terminal"


def test_a_run_keeps_its_topology_version() -> None:
    old = Topology.build("v", Step("a"))
    new = Topology.build("v", Step("b"))
    record, (task,) = start_run(old, run_id="r", input=0, now=0.0)
    with pytest.raises(TopologyError, match="uses version"):
        apply_reply(new, record, ok_reply(task, 1), sender="a", now=1.0)
    with pytest.raises(TopologyError, match="uses version"):
        apply_timeouts(new, record, now=1.0)
