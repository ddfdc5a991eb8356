"""Where a run stands, derived from its topology and its step records alone.

The interpreter stores only leaf steps; every composite node's state is recomputed here on
each change: a sequential waits on its first unfinished child, a conditional re-evaluates its
(deterministic) condition, a parallel counts its branches' successes and failures in the
order the steps finished (``StepRecord.seq``). A node's result carries the ``seq`` at which it
was decided, so a parallel's quorum and ``first`` merge are fixed once and for all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

from bus.messages import ErrorInfo
from bus.workflow.expr import compile_expr, parse_path
from bus.workflow.exprtree import get_path
from bus.workflow.merge import Joined, merge_outputs
from bus.workflow.records import StepRecord
from bus.workflow.topology import (
    Conditional,
    Node,
    Parallel,
    Sequential,
    Step,
    Topology,
    branch_key,
    join_path,
    root_node,
    step_paths,
)

Status = Literal["wait", "ok", "fail"]


class Outcome(NamedTuple):
    """A node's result.

    ``active`` maps every open step the node waits on to its input: pending steps to
    dispatch, dispatched and retrying ones to wait for. ``dead`` lists the steps that will
    never be needed: a branch a conditional did not take, every step of a parallel that has
    joined or failed. Steps after the one a sequential waits on are in neither.
    """

    status: Status
    output: Any = None
    error: ErrorInfo | None = None
    seq: int = 0
    active: Mapping[str, Any] = {}
    dead: tuple[str, ...] = ()


def derive(topology: Topology, value: Any, steps: Mapping[str, StepRecord]) -> Outcome:
    """Evaluate the whole topology for the run input ``value``."""
    return _node(root_node(topology), "", value, 0, steps)


def select_input(step: Step, value: Any) -> Any:
    """The part of the current value a step's agent receives."""
    return value if step.input is None else get_path(value, parse_path(step.input))


def _node(node: Node, path: str, value: Any, at: int, steps: Mapping[str, StepRecord]) -> Outcome:
    if isinstance(node, Step):
        return _step(node, path, value, steps[path])
    if isinstance(node, Sequential):
        dead: tuple[str, ...] = ()
        for i, child in enumerate(node.steps):
            out = _node(child, join_path(path, i), value, at, steps)
            dead += out.dead
            if out.status != "ok":
                return out._replace(dead=dead)
            value, at = out.output, out.seq
        return Outcome("ok", value, seq=at, dead=dead)
    if isinstance(node, Conditional):
        then, otherwise = join_path(path, "then"), join_path(path, "otherwise")
        if compile_expr(node.when).evaluate(value):
            out = _node(node.then, then, value, at, steps)
            skipped = () if node.otherwise is None else step_paths(node.otherwise, otherwise)
        elif node.otherwise is None:
            out, skipped = Outcome("ok", value, seq=at), ()
        else:
            out = _node(node.otherwise, otherwise, value, at, steps)
            skipped = step_paths(node.then, then)
        return out._replace(dead=out.dead + skipped)
    return _parallel(node, path, value, at, steps)


def _step(step: Step, path: str, value: Any, record: StepRecord) -> Outcome:
    if record.state == "succeeded":
        return Outcome("ok", record.output, seq=record.seq)
    if record.state == "failed":
        return Outcome("fail", error=record.error, seq=record.seq)
    if record.state == "skipped":
        return Outcome("wait")
    return Outcome("wait", active={path: select_input(step, value)})


def _parallel(
    node: Parallel, path: str, value: Any, at: int, steps: Mapping[str, StepRecord]
) -> Outcome:
    outs = [_node(b, join_path(path, i), value, at, steps) for i, b in enumerate(node.branches)]
    need = node.quorum or (1 if node.merge == "first" else len(outs))
    oks = sorted((o.seq, i) for i, o in enumerate(outs) if o.status == "ok")
    fails = sorted((o.seq, i) for i, o in enumerate(outs) if o.status == "fail")
    spare = len(outs) - need  # failures the parallel can absorb
    ok_at = oks[need - 1][0] if len(oks) >= need else math.inf
    fail_at = fails[spare][0] if len(fails) > spare else math.inf
    if ok_at < fail_at:
        joined = [
            Joined(i, branch_key(node.branches[i], i), outs[i].output, seq) for seq, i in oks[:need]
        ]
        done = step_paths(node, path)
        try:
            merged = merge_outputs(node.merge, joined)
        except Exception as exc:
            reason = f"merge {node.merge} failed: {exc}"
            error = ErrorInfo("permanent", reason, type(exc).__name__)
            return Outcome("fail", error=error, seq=int(ok_at), dead=done)
        return Outcome("ok", merged, seq=int(ok_at), dead=done)
    if fail_at < math.inf:
        failed = outs[fails[spare][1]]
        return Outcome("fail", error=failed.error, seq=int(fail_at), dead=step_paths(node, path))
    active: dict[str, Any] = {}
    dead: tuple[str, ...] = ()
    for out in outs:
        active.update(out.active)
        dead += out.dead
    return Outcome("wait", active=active, dead=dead)
