"""Checks of a topology's content: what a file or a Python definition got wrong.

Each node is checked on its own (``problem``); ``check`` walks a whole topology and names the
step path, the loader names the path inside the file instead.
"""

from __future__ import annotations

from bus.errors import TopologyError
from bus.workflow.expr import ExprError, compile_expr, parse_path
from bus.workflow.merge import resolve_merge
from bus.workflow.topology import (
    Conditional,
    Node,
    Parallel,
    Sequential,
    Step,
    Topology,
    branch_key,
    walk,
)


def problem(node: Node) -> tuple[str, str] | None:
    """What is wrong with one node itself (not its children): ``(field, reason)``."""
    if isinstance(node, Step):
        return _step_problem(node)
    if isinstance(node, Sequential):
        return None if node.steps else ("", "an empty list of steps")
    if isinstance(node, Conditional):
        try:
            compile_expr(node.when)
        except ExprError as exc:
            return "when", str(exc)
        return None
    return _parallel_problem(node)


def _step_problem(step: Step) -> tuple[str, str] | None:
    for key, agent in (("agent", step.agent), ("fallback", step.fallback)):
        if agent is not None and not _is_token(agent):
            return key, f"{agent!r} is not an agent name (no spaces, dots, '*' or '>')"
    if step.name is not None and not step.name:
        return "name", "an empty name"
    if step.timeout is not None and step.timeout <= 0:
        return "timeout", f"must be more than 0 seconds, got {step.timeout}"
    if step.retry is not None:
        if step.retry.attempts < 1:
            return "retry.attempts", f"must be at least 1, got {step.retry.attempts}"
        if step.retry.base < 0 or step.retry.max < 0:
            return "retry", "base and max must not be negative"
    if step.input is not None:
        try:
            parse_path(step.input)
        except ValueError as exc:
            return "input", str(exc)
    return None


def _parallel_problem(node: Parallel) -> tuple[str, str] | None:
    if not node.branches:
        return "parallel", "no branches"
    try:
        resolve_merge(node.merge)
    except TopologyError as exc:
        return "merge", str(exc)
    if node.quorum is not None and not 1 <= node.quorum <= len(node.branches):
        return "quorum", f"{node.quorum} is not between 1 and the {len(node.branches)} branches"
    if node.merge == "by_name":
        keys = [branch_key(b, i) for i, b in enumerate(node.branches)]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            return "parallel", (
                f"two branches are named {', '.join(map(repr, twice))} in a by_name merge; "
                "give them a distinct `name:`"
            )
    return None


def _is_token(name: str) -> bool:
    return bool(name) and not any(c in name for c in ". *>\t\n")


def trigger_problem(pattern: str) -> str | None:
    """What is wrong with a trigger pattern, if anything."""
    tokens = pattern.split(".")
    if not all(tokens) or any(" " in t for t in tokens):
        return f"trigger {pattern!r} is not a subject (empty token or a space)"
    if ">" in tokens[:-1] or any(t not in ("*", ">") and ("*" in t or ">" in t) for t in tokens):
        return f"trigger {pattern!r}: '*' must be a whole token and '>' the last one"
    return None


def check(topology: Topology) -> None:
    """Check every node of a topology.

    Raises:
        TopologyError: ``topology 'x': at 1.then (quorum): ...``.
    """
    where = f"topology {topology.name!r}"
    if not topology.name:
        raise TopologyError(f"{where}: the name is empty")
    for pattern in topology.trigger:
        if (reason := trigger_problem(pattern)) is not None:
            raise TopologyError(f"{where}: {reason}")
    for path, node in walk(topology):
        if (found := problem(node)) is not None:
            field, reason = found
            raise TopologyError(
                f"{where}: at {path or 'root'}{f' ({field})' if field else ''}: {reason}"
            )
