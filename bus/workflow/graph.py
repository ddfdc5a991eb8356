"""A Mermaid flowchart of a topology (``bus graph TOPOLOGY``).

Steps are boxes (node id ``n_<path>``, with ``.`` as ``_``), a parallel is a fork and a join
(showing its merge and quorum), a conditional is a diamond with its expression and ``then`` /
``else`` edges; a missing ``otherwise`` is an ``else`` edge straight to what follows.
"""

from __future__ import annotations

from bus.workflow.topology import (
    Conditional,
    Node,
    Parallel,
    Sequential,
    Step,
    Topology,
    join_path,
    root_node,
)

Exit = tuple[str, str | None]  # node id, edge label


def to_mermaid(topology: Topology) -> str:
    """The topology as Mermaid ``flowchart TD`` source."""
    graph = _Graph()
    title = topology.name + (f"<br/>on {', '.join(topology.trigger)}" if topology.trigger else "")
    graph.lines.append(f'  start(["{_text(topology.name)}{title[len(topology.name) :]}"])')
    entry, exits = graph.node(root_node(topology), "")
    graph.lines.append('  done(["output"])')
    graph.edge("start", entry)
    for source, label in exits:
        graph.edge(source, "done", label)
    return "\n".join(["flowchart TD", *graph.lines]) + "\n"


def _text(value: str) -> str:
    return value.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def _id(path: str) -> str:
    return "n_" + (path.replace(".", "_") or "root")


class _Graph:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def edge(self, source: str, target: str, label: str | None = None) -> None:
        arrow = f"-->|{label}|" if label else "-->"
        self.lines.append(f"  {source} {arrow} {target}")

    def node(self, node: Node, path: str) -> tuple[str, list[Exit]]:
        """Draw ``node``; return its entry id and the edges leaving it."""
        if isinstance(node, Step):
            return self.step(node, path)
        if isinstance(node, Sequential):
            return self.sequential(node, path)
        if isinstance(node, Parallel):
            return self.parallel(node, path)
        return self.conditional(node, path)

    def step(self, step: Step, path: str) -> tuple[str, list[Exit]]:
        parts = [_text(step.name or step.agent)]
        if step.name:
            parts.append(f"agent: {_text(step.agent)}")
        if step.input:
            parts.append(f"input: {_text(step.input)}")
        if step.retry and step.retry.attempts > 1:
            parts.append(f"retry: {step.retry.attempts}")
        if step.timeout:
            parts.append(f"timeout: {step.timeout:g}s")
        if step.fallback:
            parts.append(f"fallback: {_text(step.fallback)}")
        self.lines.append(f'  {_id(path)}["{"<br/>".join(parts)}"]')
        return _id(path), [(_id(path), None)]

    def sequential(self, node: Sequential, path: str) -> tuple[str, list[Exit]]:
        entry, exits = "", list[Exit]()
        for i, child in enumerate(node.steps):
            child_entry, child_exits = self.node(child, join_path(path, i))
            if not entry:
                entry = child_entry
            for source, label in exits:
                self.edge(source, child_entry, label)
            exits = child_exits
        return entry, exits

    def parallel(self, node: Parallel, path: str) -> tuple[str, list[Exit]]:
        fork, join = f"{_id(path)}_fork", f"{_id(path)}_join"
        quorum = f", quorum {node.quorum}" if node.quorum else ""
        self.lines.append(f'  {fork}{{{{"parallel"}}}}')
        self.lines.append(f'  {join}{{{{"join: {_text(node.merge)}{quorum}"}}}}')
        for i, branch in enumerate(node.branches):
            entry, exits = self.node(branch, join_path(path, i))
            self.edge(fork, entry)
            for source, label in exits:
                self.edge(source, join, label)
        return fork, [(join, None)]

    def conditional(self, node: Conditional, path: str) -> tuple[str, list[Exit]]:
        test = f"{_id(path)}_if"
        self.lines.append(f'  {test}{{"{_text(node.when)}"}}')
        entry, exits = self.node(node.then, join_path(path, "then"))
        self.edge(test, entry, "then")
        if node.otherwise is None:
            return test, [*exits, (test, "else")]
        other, other_exits = self.node(node.otherwise, join_path(path, "otherwise"))
        self.edge(test, other, "else")
        return test, exits + other_exits
