"""The pure interpreter: every node type, nesting, merges, quorum and input selection."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from bus.messages import ErrorInfo, Task, error_reply, ok_reply
from bus.workflow import (
    RejectedTransitionError,
    RunRecord,
    Step,
    Topology,
    abandoned,
    apply_reply,
    conditional,
    current_tasks,
    parallel,
    start_run,
)
from bus.workflow.simulate import simulate


def reply(
    topology: Topology, record: RunRecord, task: Task, output: Any = None, *, now: float = 1.0
) -> tuple[RunRecord, list[Task]]:
    return apply_reply(topology, record, ok_reply(task, output), sender=task.agent, now=now)


def fail(
    topology: Topology, record: RunRecord, task: Task, kind: str = "permanent", *, now: float = 1.0
) -> tuple[RunRecord, list[Task]]:
    error = error_reply(task, ErrorInfo(kind, "boom"))  # type: ignore[arg-type]
    return apply_reply(topology, record, error, sender=task.agent, now=now)


def states(record: RunRecord) -> dict[str, str]:
    return {path: step.state for path, step in record.steps.items()}


def concat(pairs: list[tuple[str, Any]]) -> str:
    """A custom merge, referenced as ``test_workflow_interpreter:concat``."""
    return "+".join(f"{key}={output}" for key, output in pairs)


def explode(pairs: list[tuple[str, Any]]) -> Any:
    raise ValueError("cannot merge")


def test_sequential_passes_each_output_to_the_next() -> None:
    topology = Topology.build("seq", [Step("a"), Step("b"), Step("c")])
    record, tasks = start_run(topology, run_id="r1", input=1, now=10.0, trace="00-t-s-01")
    assert record.state == "running"
    assert tasks == [
        Task(
            id="r1/0/1",
            agent="a",
            input=1,
            run_id="r1",
            step="0",
            attempt=1,
            deadline=0.0,
            trace="00-t-s-01",
            created_at=10.0,
        )
    ]
    assert states(record) == {"0": "dispatched", "1": "pending", "2": "pending"}
    record, tasks = reply(topology, record, tasks[0], 2, now=11.0)
    assert [(t.id, t.agent, t.input) for t in tasks] == [("r1/1/1", "b", 2)]
    record, tasks = reply(topology, record, tasks[0], 3, now=12.0)
    record, tasks = reply(topology, record, tasks[0], 4, now=13.0)
    assert tasks == []
    assert (record.state, record.output, record.error) == ("completed", 4, None)
    assert (record.created_at, record.finished_at) == (10.0, 13.0)
    assert [s.seq for s in record.steps.values()] == [1, 2, 3]


def test_a_single_node_root_is_step_zero() -> None:
    topology = Topology.build("one", Step("a"))
    record, tasks = start_run(topology, run_id="r", input="x", now=0.0)
    assert [t.id for t in tasks] == ["r/0/1"]
    record, _ = reply(topology, record, tasks[0], "y")
    assert record.output == "y"


def test_parallel_fans_out_the_same_input_and_joins_by_name() -> None:
    topology = Topology.build(
        "fan", [Step("prep"), parallel(Step("lint"), Step("test", name="unit")), Step("sum")]
    )
    record, tasks = start_run(topology, run_id="r", input=0, now=0.0)
    record, tasks = reply(topology, record, tasks[0], {"src": 1})
    assert [(t.step, t.agent, t.input) for t in tasks] == [
        ("1.0", "lint", {"src": 1}),
        ("1.1", "test", {"src": 1}),
    ]
    lint, test = tasks
    record, more = reply(topology, record, test, "ok-t")
    assert more == []  # waits for every branch by default
    record, more = reply(topology, record, lint, "ok-l")
    assert [(t.agent, t.input) for t in more] == [("sum", {"lint": "ok-l", "unit": "ok-t"})]


def test_list_merge_keeps_branch_order_whatever_the_finish_order() -> None:
    topology = Topology.build("l", parallel(Step("a"), Step("b"), Step("c"), merge="list"))
    record, tasks = start_run(topology, run_id="r", input=0, now=0.0)
    for task in reversed(tasks):
        record, _ = reply(topology, record, task, task.agent.upper())
    assert record.output == ["A", "B", "C"]


def test_first_merge_takes_the_first_to_finish_and_skips_the_rest() -> None:
    topology = Topology.build("f", [parallel(Step("a"), Step("b"), merge="first"), Step("z")])
    record, tasks = start_run(topology, run_id="r", input=0, now=0.0)
    before = record
    record, more = reply(topology, record, tasks[1], "from-b")
    assert abandoned(before, record) == ["r/0.0/1"]
    assert [(t.agent, t.input) for t in more] == [("z", "from-b")]
    assert states(record)["0.0"] == "skipped"
    with pytest.raises(RejectedTransitionError, match="skipped") as caught:
        reply(topology, record, tasks[0], "from-a")
    assert caught.value.reason == "late"


def test_quorum_joins_after_k_successes() -> None:
    topology = Topology.build(
        "q", [parallel(Step("a"), Step("b"), Step("c"), merge="list", quorum=2), Step("z")]
    )
    record, tasks = start_run(topology, run_id="r", input=0, now=0.0)
    record, more = reply(topology, record, tasks[2], "C")
    assert more == []
    record, more = reply(topology, record, tasks[0], "A")
    assert [t.input for t in more] == [["A", "C"]]
    assert states(record) == {
        "0.0": "succeeded",
        "0.1": "skipped",
        "0.2": "succeeded",
        "1": "dispatched",
    }


def test_quorum_tolerates_failures_until_it_cannot_be_reached() -> None:
    topology = Topology.build("q", parallel(Step("a"), Step("b"), Step("c"), quorum=2))
    record, tasks = start_run(topology, run_id="r", input=0, now=0.0)
    record, _ = fail(topology, record, tasks[0])
    assert record.state == "running"
    record, _ = reply(topology, record, tasks[1], "B")
    assert record.state == "running"
    record, _ = reply(topology, record, tasks[2], "C")
    assert (record.state, record.output) == ("completed", {"b": "B", "c": "C"})

    record, tasks = start_run(topology, run_id="r2", input=0, now=0.0)
    record, _ = fail(topology, record, tasks[0])
    record, _ = fail(topology, record, tasks[2], now=2.0)
    assert record.state == "failed"
    assert record.error == ErrorInfo("permanent", "boom")
    assert states(record)["0.1"] == "skipped"
    assert record.finished_at == 2.0


def test_one_failed_branch_fails_a_parallel_without_quorum() -> None:
    topology = Topology.build("p", [parallel(Step("a"), Step("b")), Step("z")])
    record, tasks = start_run(topology, run_id="r", input=0, now=0.0)
    record, more = fail(topology, record, tasks[0])
    assert more == []
    assert record.state == "failed"
    assert states(record) == {"0.0": "failed", "0.1": "skipped", "1": "skipped"}


def test_custom_merge_function_gets_key_output_pairs_in_branch_order() -> None:
    topology = Topology.build(
        "m",
        parallel(Step("a"), [Step("b"), Step("c")], merge="test_workflow_interpreter:concat"),
    )
    record = simulate(topology, 1, {"a": lambda x: x + 1, "b": lambda x: x * 10, "c": str})
    assert record.output == "a=2+1=10"  # a non-step branch is keyed by its index


def test_failing_merge_fails_the_run() -> None:
    topology = Topology.build("m", parallel(Step("a"), merge="test_workflow_interpreter:explode"))
    record = simulate(topology, 1, {"a": lambda x: x})
    assert record.state == "failed"
    assert record.error == ErrorInfo(
        "permanent", "merge test_workflow_interpreter:explode failed: cannot merge", "ValueError"
    )


def test_conditional_takes_then_and_skips_otherwise() -> None:
    topology = Topology.build(
        "c",
        [
            Step("plan"),
            conditional("complexity > 5", [Step("deep"), Step("review")], Step("quick")),
            Step("report"),
        ],
    )
    record, tasks = start_run(topology, run_id="r", input="src", now=0.0)
    record, tasks = reply(topology, record, tasks[0], {"complexity": 8})
    assert [(t.step, t.input) for t in tasks] == [("1.then.0", {"complexity": 8})]
    assert states(record)["1.otherwise"] == "skipped"
    assert states(record)["1.then.1"] == "pending"

    record, tasks = start_run(topology, run_id="r2", input="src", now=0.0)
    record, tasks = reply(topology, record, tasks[0], {"complexity": 2})
    assert [t.step for t in tasks] == ["1.otherwise"]
    assert (states(record)["1.then.0"], states(record)["1.then.1"]) == ("skipped", "skipped")
    record, tasks = reply(topology, record, tasks[0], "quick-result")
    assert [(t.agent, t.input) for t in tasks] == [("report", "quick-result")]


def test_conditional_without_otherwise_passes_its_input_through() -> None:
    topology = Topology.build("c", [Step("a"), conditional("go", Step("b")), Step("z")])
    record = simulate(topology, 0, {"a": lambda _: {"go": False}, "b": str, "z": lambda x: x})
    assert record.output == {"go": False}
    assert states(record)["1.then"] == "skipped"


def test_a_run_that_needs_no_step_completes_at_once() -> None:
    topology = Topology.build("c", conditional("exists x", Step("a")))
    record, tasks = start_run(topology, run_id="r", input={"y": 1}, now=5.0)
    assert tasks == []
    assert (record.state, record.output, record.finished_at) == ("completed", {"y": 1}, 5.0)
    assert states(record) == {"0.then": "skipped"}


def test_input_selects_part_of_the_current_value() -> None:
    topology = Topology.build(
        "i", [Step("a", input="spec.files.0"), Step("b", input="missing.key"), Step("c")]
    )
    record, tasks = start_run(topology, run_id="r", input={"spec": {"files": ["x.py"]}}, now=0)
    assert tasks[0].input == "x.py"
    record, tasks = reply(topology, record, tasks[0], {"n": 1})
    assert tasks[0].input is None
    record, tasks = reply(topology, record, tasks[0], "b-out")
    assert tasks[0].input == "b-out"  # the next step gets the output, not the selection


def test_deep_nesting() -> None:
    topology = Topology.build(
        "deep",
        [
            Step("start"),
            parallel(
                [Step("x"), conditional("n > 1", parallel(Step("y"), Step("z"), merge="list"))],
                conditional("n > 100", Step("never"), [Step("w"), Step("w", name="w2")]),
                merge="list",
            ),
        ],
    )
    calls: list[str] = []

    def agent(name: str) -> Any:
        def handle(value: Any) -> Any:
            calls.append(name)
            if name in ("start", "x"):
                return {"n": 2, "by": name}
            return f"{name}({value['by'] if isinstance(value, dict) else value})"

        return handle

    agents = {name: agent(name) for name in ("start", "x", "y", "z", "w", "never")}
    record = simulate(topology, None, agents)
    assert record.state == "completed"
    assert record.output == [["y(x)", "z(x)"], "w(w(start))"]
    assert sorted(calls) == ["start", "w", "w", "x", "y", "z"]
    assert states(record)["1.1.then"] == "skipped"


def test_record_json_has_the_cli_shape() -> None:
    topology = Topology.build("shape", [Step("a"), Step("b")])
    record = simulate(topology, {"k": 1}, {"a": lambda x: x, "b": lambda x: [x]})
    data = msgspec.json.decode(msgspec.json.encode(record))
    assert {
        "run_id",
        "topology",
        "state",
        "input",
        "output",
        "error",
        "steps",
        "created_at",
        "finished_at",
    } <= set(data)
    assert data["topology"] == "shape"
    assert data["topology_version"] == topology.version
    assert data["output"] == [{"k": 1}]
    assert data["steps"]["1"]["agent"] == "b"
    assert data["steps"]["1"]["state"] == "succeeded"
    assert data["steps"]["1"]["attempts"] == 1
    assert msgspec.json.decode(msgspec.json.encode(record), type=RunRecord) == record


def test_current_tasks_rebuild_the_dispatched_attempts() -> None:
    topology = Topology.build("re", [Step("p"), parallel(Step("a", timeout=5), Step("b"))])
    record, tasks = start_run(topology, run_id="r", input=0, now=0.0)
    record, tasks = reply(topology, record, tasks[0], "x", now=1.0)
    record, _ = reply(topology, record, tasks[1], "y", now=2.0)
    again = current_tasks(topology, record, now=3.0)
    assert again == [msgspec.structs.replace(tasks[0], created_at=3.0)]
    assert again[0].deadline == 6.0
