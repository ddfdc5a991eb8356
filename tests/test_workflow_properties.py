"""Hypothesis: random small topologies under random replies.

Whatever arrives (valid, duplicated, reordered, forged, wrong task ids, timeouts, cancel), every
change the interpreter makes follows the transition tables, a rejected reply changes nothing,
a finished run never changes, and a run driven to its end gives the output a direct
recursive evaluation of the topology gives.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from bus.messages import ErrorInfo, Reply, Task, error_reply, ok_reply
from bus.workflow import (
    Conditional,
    Node,
    Parallel,
    RejectedTransitionError,
    RunRecord,
    Sequential,
    Step,
    StepRecord,
    StepRetry,
    Topology,
    apply_reply,
    apply_timeouts,
    cancel_run,
    compile_expr,
    start_run,
)
from bus.workflow.derive import select_input
from bus.workflow.states import RUN_TRANSITIONS, STEP_TERMINAL, STEP_TRANSITIONS
from bus.workflow.topology import branch_key, step_index

T = TypeVar("T")

AGENTS = ("a", "b", "c")
WHENS = ("x > 3", "exists by", "x in [1, 2, 5]", "not (x >= 2 and by == 'a')")
KINDS = ("transient", "permanent", "timeout", "breaker_open", "rate_limited", "invalid_input")

steps = st.builds(
    Step,
    agent=st.sampled_from(AGENTS),
    fallback=st.none() | st.just("fb"),
    retry=st.none()
    | st.builds(StepRetry, attempts=st.integers(1, 3), base=st.sampled_from([0.0, 0.5])),
    timeout=st.none() | st.sampled_from([1.0, 5.0]),
    input=st.none() | st.just("x"),
)


def composites(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    lists = st.lists(children, min_size=1, max_size=3)
    return st.one_of(
        lists.map(lambda nodes: Sequential(tuple(nodes))),
        lists.flatmap(
            lambda nodes: st.builds(
                Parallel,
                st.just(tuple(nodes)),
                merge=st.sampled_from(["list", "first"]),
                quorum=st.none() | st.integers(1, len(nodes)),
            )
        ),
        st.builds(
            Conditional,
            when=st.sampled_from(WHENS),
            then=children,
            otherwise=st.none() | children,
        ),
    )


topologies = st.recursive(steps, composites, max_leaves=6).map(lambda n: Topology.build("h", n))


def step_move_is_legal(old: StepRecord, new: StepRecord) -> bool:
    """One interpreter call may take a step one edge, or through ``retrying`` back to
    ``dispatched`` (a new attempt), never anything else."""
    if old == new:
        return True
    if old.state in STEP_TERMINAL or new.attempts < old.attempts:
        return False
    dispatches = new.attempts - old.attempts
    if new.state == "dispatched" and (old.state != "dispatched" or dispatches):
        direct = "dispatched" in STEP_TRANSITIONS[old.state]
        via_retry = "retrying" in STEP_TRANSITIONS[old.state]
        return dispatches == 1 and (direct or via_retry) and new.task_id != old.task_id
    if dispatches:
        return False
    return new.state in STEP_TRANSITIONS[old.state] or new.state == old.state == "retrying"


def check_change(before: RunRecord, after: RunRecord, tasks: list[Task], seen: set[str]) -> None:
    assert after.state == before.state or after.state in RUN_TRANSITIONS[before.state]
    assert after.steps.keys() == before.steps.keys()
    for path, old in before.steps.items():
        assert step_move_is_legal(old, after.steps[path]), (path, old, after.steps[path])
    for task in tasks:
        step = after.steps[task.step]
        assert task.id not in seen  # a task id is never issued twice
        seen.add(task.id)
        assert task.id == f"{after.run_id}/{task.step}/{task.attempt}" == step.task_id
        assert (step.state, step.attempts, step.agent) == ("dispatched", task.attempt, task.agent)
    if after.terminal:
        assert tasks == []
        assert all(s.state in STEP_TERMINAL for s in after.steps.values())


def attempt(call: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T | None, str | None]:
    """The result of ``call``, or the reason it was rejected."""
    try:
        return call(*args, **kwargs), None
    except RejectedTransitionError as exc:
        event(f"rejected: {exc.reason}")
        return None, exc.reason


def snapshot(record: RunRecord) -> bytes:
    return msgspec.json.encode(record)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topology=topologies, data=st.data())
def test_any_sequence_of_replies_keeps_the_state_machine(
    topology: Topology, data: st.DataObject
) -> None:
    seen: set[str] = set()
    record, tasks = start_run(topology, run_id="run", input={"x": 1}, now=0.0)
    fresh = {path: StepRecord(agent=step.agent) for path, step in step_index(topology).items()}
    check_change(replace(record, state="running", steps=fresh), record, tasks, seen)
    issued, now = list(tasks), 0.0
    outputs = st.fixed_dictionaries({"x": st.integers(0, 6), "by": st.sampled_from(AGENTS)})
    for _ in range(data.draw(st.integers(1, 30), label="length")):
        before, frozen = record, snapshot(record)
        action = data.draw(
            st.sampled_from(["ok", "ok", "error", "forged", "wrong_id", "tick", "cancel"]),
            label="action",
        )
        if action in ("tick", "cancel") or not issued:
            if action == "cancel" and data.draw(st.booleans(), label="really cancel"):
                cancelled, reason = attempt(cancel_run, before, now=now)
                if cancelled is None:
                    assert (reason, before.terminal) == ("terminal", True)
                    assert snapshot(record) == frozen
                    continue
                record = cancelled
                check_change(before, record, [], seen)
                continue
            now += data.draw(st.sampled_from([0.1, 0.6, 2.0, 6.0]), label="dt")
            record, tasks = apply_timeouts(topology, record, now=now)
            if before.terminal:
                assert (record, tasks) == (before, [])
            check_change(before, record, tasks, seen)
            issued += tasks
            continue
        task = data.draw(st.sampled_from(issued), label="task")  # old, repeated or current
        sender = task.agent
        if action == "forged":
            sender = data.draw(st.sampled_from([a for a in (*AGENTS, "fb") if a != task.agent]))
        if action == "wrong_id":
            task = replace(task, id=data.draw(st.sampled_from([
                f"{task.id[:-1]}{task.attempt + 1}", f"other/{task.step}/1", "run/9.9/1", "junk",
            ]), label="wrong id"))  # fmt: skip
            open_step = record.steps.get(task.step)
            if open_step is not None and open_step.task_id == task.id:
                action = "ok"  # the "wrong" id is the attempt now dispatched: a valid reply
        if action == "error":
            kind = data.draw(st.sampled_from(KINDS), label="kind")
            reply: Reply = error_reply(task, ErrorInfo(kind))  # type: ignore[arg-type]
        else:
            reply = ok_reply(task, data.draw(outputs, label="output"))
        current = record.steps.get(task.step)
        result, reason = attempt(apply_reply, topology, before, reply, sender=sender, now=now)
        if result is None:
            assert snapshot(record) == frozen  # nothing changed
            if before.terminal:
                assert reason == "terminal"
            elif action == "forged":
                assert reason in ("forged", "late", "unknown_step")
            continue
        record, tasks = result
        event(f"accepted: {action}")
        assert action in ("ok", "error")
        assert not before.terminal
        assert current is not None
        assert (current.state, current.task_id) == ("dispatched", task.id)
        check_change(before, record, tasks, seen)
        issued += tasks
    event(f"final state: {record.state}")


# -- liveness: a run driven to its end gives the right output ------------------------------


def agent_output(agent: str, value: Any) -> dict[str, Any]:
    x = value.get("x") if isinstance(value, dict) else None
    return {"by": agent, "x": ((x if isinstance(x, int) else 0) * 3 + len(agent)) % 7}


def expected(node: Node, value: Any) -> Any:
    """The output a topology should give, computed directly from its definition."""
    if isinstance(node, Step):
        return agent_output(node.agent, select_input(node, value))
    if isinstance(node, Sequential):
        for child in node.steps:
            value = expected(child, value)
        return value
    if isinstance(node, Conditional):
        if compile_expr(node.when).evaluate(value):
            return expected(node.then, value)
        return value if node.otherwise is None else expected(node.otherwise, value)
    outputs = [expected(branch, value) for branch in node.branches]
    if node.merge == "list":
        return outputs
    return {
        branch_key(b, i): out for i, (b, out) in enumerate(zip(node.branches, outputs, strict=True))
    }


def named(node: Node, counter: list[int]) -> Node:
    """The same tree with a distinct name on every step (so any by_name merge is valid)."""
    if isinstance(node, Step):
        counter[0] += 1
        return replace(node, name=f"s{counter[0]}", fallback=None, timeout=None)
    if isinstance(node, Sequential):
        return Sequential(tuple(named(n, counter) for n in node.steps))
    if isinstance(node, Parallel):
        return Parallel(tuple(named(n, counter) for n in node.branches), node.merge, None)
    otherwise = None if node.otherwise is None else named(node.otherwise, counter)
    return Conditional(node.when, named(node.then, counter), otherwise)


def with_merges(node: Node, merges: list[str]) -> Node:
    if isinstance(node, Parallel):
        merge = merges[len(node.branches) % len(merges)]
        return Parallel(tuple(with_merges(b, merges) for b in node.branches), merge)
    if isinstance(node, Sequential):
        return Sequential(tuple(with_merges(n, merges) for n in node.steps))
    if isinstance(node, Conditional):
        otherwise = None if node.otherwise is None else with_merges(node.otherwise, merges)
        return Conditional(node.when, with_merges(node.then, merges), otherwise)
    return node


@settings(max_examples=200, deadline=None)
@given(
    tree=st.recursive(steps, composites, max_leaves=8),
    merges=st.lists(st.sampled_from(["list", "by_name"]), min_size=1, max_size=3),
    x=st.integers(0, 6),
    seed=st.integers(0, 2**32 - 1),
)
def test_a_run_answered_in_any_order_gives_the_direct_result(
    tree: Node, merges: list[str], x: int, seed: int
) -> None:
    topology = Topology.build("live", with_merges(named(tree, [0]), merges))
    order = random.Random(seed)
    record, pending = start_run(topology, run_id="r", input={"x": x}, now=0.0)
    while pending:
        task = pending.pop(order.randrange(len(pending)))  # replies arrive in any order
        output = agent_output(task.agent, task.input)
        record, tasks = apply_reply(
            topology, record, ok_reply(task, output), sender=task.agent, now=1.0
        )
        pending += tasks
    assert record.state == "completed"
    assert record.output == expected(topology.root, {"x": x})
    assert all(s.state in ("succeeded", "skipped") for s in record.steps.values())
