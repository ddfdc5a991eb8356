"""Topologies: a workflow as a tree of ``Step``, ``Sequential``, ``Parallel`` and
``Conditional`` nodes; one msgspec schema for Python and for YAML/TOML files.

Step paths name nodes in a run record. The root is always a ``Sequential`` (a single node is
wrapped in one) whose children are ``0``, ``1``, ...; below a node at path ``P`` a
sequential's children and a parallel's branches are ``P.0``, ``P.1``, ..., and a conditional's
branches are ``P.then`` and ``P.otherwise``. So ``1.then.0`` is the first node of the
``then`` branch of the conditional that is the second top-level node.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from types import MappingProxyType
from typing import TypeAlias

import msgspec

from bus.codec import canonical, convert
from bus.errors import InvalidInputError, TopologyError


class StepRetry(msgspec.Struct, frozen=True, kw_only=True):
    """Step-level retries: the coordinator dispatches a new attempt after a retryable error.

    Attributes:
        attempts: tries per agent, the first included (1 = no retry); the fallback agent
            gets as many.
        base: seconds before the second try, doubled for each further one.
        max: cap on one delay, in seconds. A ``retry_after`` in the error overrides both.
    """

    attempts: int = 1
    base: float = 0.5
    max: float = 10.0

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 = before the second try)."""
        return float(min(self.max, self.base * 2 ** (retry - 1)))


class Step(msgspec.Struct, frozen=True, tag="step", tag_field="kind"):
    """One call to an agent.

    Attributes:
        agent: who handles it (``bus.task.<agent>``).
        name: key in a ``by_name`` merge (default: the agent).
        fallback: agent that takes the same input once the step failed for good.
        retry: step-level retries (``None``: one try).
        timeout: seconds for the whole step, retries included (the fallback gets its own).
        input: dotted path selecting the part of the current value sent to the agent.
    """

    agent: str
    name: str | None = None
    fallback: str | None = None
    retry: StepRetry | None = None
    timeout: float | None = None
    input: str | None = None


class Sequential(msgspec.Struct, frozen=True, tag="sequential", tag_field="kind"):
    """Nodes run in order, each given the previous one's output."""

    steps: tuple[Node, ...]


class Parallel(msgspec.Struct, frozen=True, tag="parallel", tag_field="kind"):
    """Branches run at once on the same input and join (see ``bus.workflow.merge``).

    Attributes:
        branches: the nodes to run.
        merge: ``by_name``, ``list``, ``first`` or ``module:function``.
        quorum: join after this many successes (default: all; 1 for ``first``). The parallel
            fails as soon as its quorum cannot be reached any more.
    """

    branches: tuple[Node, ...]
    merge: str = "by_name"
    quorum: int | None = None


class Conditional(msgspec.Struct, frozen=True, tag="conditional", tag_field="kind"):
    """Run ``then`` when ``when`` holds for the input, else ``otherwise`` (absent: the input
    passes through unchanged). See ``bus.workflow.expr`` for the expression language."""

    when: str
    then: Node
    otherwise: Node | None = None


Node: TypeAlias = Step | Sequential | Parallel | Conditional


class Topology(msgspec.Struct, frozen=True):
    """A named workflow.

    Attributes:
        name: how runs and ``bus run`` refer to it.
        root: the tree of nodes.
        trigger: event types that start a run (NATS wildcards ``*`` and ``>`` allowed).
        version: content hash of the rest, filled by ``build`` and the loader.
    """

    name: str
    root: Node
    trigger: tuple[str, ...] = ()
    version: str = ""

    @classmethod
    def build(
        cls, name: str, root: Node | Sequence[Node], *, trigger: str | Iterable[str] = ()
    ) -> Topology:
        """Check a topology written in Python and give it its version.

        Raises:
            TopologyError: naming the step path and what is wrong.
        """
        from bus.workflow.checks import check  # the checks need the node classes above

        triggers = (trigger,) if isinstance(trigger, str) else tuple(trigger)
        draft = cls(name, _as_node(root), triggers)
        try:
            # One schema for both surfaces: the Python form is typed like a file (10 -> 10.0).
            topology: Topology = convert(msgspec.to_builtins(draft), cls)
        except InvalidInputError as exc:
            raise TopologyError(f"topology {name!r}: {exc}") from None
        check(topology)
        return msgspec.structs.replace(topology, version=content_hash(topology))

    def triggered_by(self, event_type: str) -> bool:
        """Whether an event of this type starts a run of this topology."""
        return any(subject_matches(pattern, event_type) for pattern in self.trigger)


def sequential(*nodes: Node | Sequence[Node]) -> Sequential:
    """``Sequential`` from nodes given as arguments (a list is itself a sequential)."""
    return Sequential(tuple(_as_node(n) for n in nodes))


def parallel(
    *branches: Node | Sequence[Node], merge: str = "by_name", quorum: int | None = None
) -> Parallel:
    """``Parallel`` from branches given as arguments (a list is a sequential branch)."""
    return Parallel(tuple(_as_node(b) for b in branches), merge, quorum)


def conditional(
    when: str, then: Node | Sequence[Node], otherwise: Node | Sequence[Node] | None = None
) -> Conditional:
    """``Conditional`` whose branches may be given as lists."""
    return Conditional(when, _as_node(then), None if otherwise is None else _as_node(otherwise))


def _as_node(value: Node | Sequence[Node]) -> Node:
    if isinstance(value, Step | Sequential | Parallel | Conditional):
        return value
    return Sequential(tuple(_as_node(v) for v in value))


def content_hash(topology: Topology) -> str:
    """A stable hash of the topology's definition (its ``version`` field excluded)."""
    body = canonical(msgspec.structs.replace(topology, version=""))
    return hashlib.sha256(body).hexdigest()[:16]


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a final ``>`` one or more."""
    want, got = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(got) > i
        if i >= len(got) or (token != "*" and token != got[i]):
            return False
    return len(got) == len(want)


# -- paths -------------------------------------------------------------------------------


def join_path(parent: str, part: str | int) -> str:
    return f"{parent}.{part}" if parent else str(part)


def root_node(topology: Topology) -> Sequential:
    """The root as a ``Sequential`` (at path ``""``)."""
    root = topology.root
    return root if isinstance(root, Sequential) else Sequential((root,))


def children(node: Node, path: str) -> list[tuple[str, Node]]:
    """The direct children of ``node`` with their paths."""
    if isinstance(node, Sequential):
        return [(join_path(path, i), n) for i, n in enumerate(node.steps)]
    if isinstance(node, Parallel):
        return [(join_path(path, i), n) for i, n in enumerate(node.branches)]
    if isinstance(node, Conditional):
        found = [(join_path(path, "then"), node.then)]
        if node.otherwise is not None:
            found.append((join_path(path, "otherwise"), node.otherwise))
        return found
    return []


def walk(topology: Topology) -> Iterator[tuple[str, Node]]:
    """Every node with its path, depth first, the root (path ``""``) first."""
    stack: list[tuple[str, Node]] = [("", root_node(topology))]
    while stack:
        path, node = stack.pop()
        yield path, node
        stack.extend(reversed(children(node, path)))


def step_paths(node: Node, path: str) -> tuple[str, ...]:
    """The paths of the leaf steps in the subtree of ``node`` (at ``path``)."""
    if isinstance(node, Step):
        return (path,)
    return tuple(
        p for child_path, child in children(node, path) for p in step_paths(child, child_path)
    )


@lru_cache(maxsize=512)
def step_index(topology: Topology) -> Mapping[str, Step]:
    """The leaf steps by path."""
    found = {path: n for path, n in walk(topology) if isinstance(n, Step)}
    return MappingProxyType(found)


def branch_key(node: Node, index: int) -> str:
    """A branch's key in a ``by_name`` merge: the step's name or agent, else its index."""
    if isinstance(node, Step):
        return node.name or node.agent
    return str(index)
