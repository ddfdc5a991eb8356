"""Topology files: YAML (``.yaml``/``.yml``) or TOML (``.toml``) with the same keys.

::

    name: review                  # default: the file name without its extension
    trigger: code.pushed          # a type or a list of types; NATS wildcards * and >
    steps:                        # a list is a Sequential
      - agent: planner            # a Step: agent, name, fallback, retry, timeout, input
        retry: {attempts: 3, base: 0.5, max: 10}     # or `retry: 3`
      - when: "complexity > 5"    # a Conditional: when, then, otherwise
        then:
          parallel: [{agent: linter}, {agent: tester}]  # a Parallel: parallel, merge, quorum
          merge: by_name

A mistake is a ``TopologyError`` naming the file, the path inside it and what is wrong:
``review.yaml: steps[1].then.parallel[0]: unknown key 'agnt'``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, NoReturn

import yaml

from bus.codec import JSON, decode, encode_json
from bus.errors import InvalidInputError, TopologyError
from bus.workflow.checks import check, problem, trigger_problem
from bus.workflow.topology import (
    Conditional,
    Node,
    Parallel,
    Sequential,
    Step,
    StepRetry,
    Topology,
    content_hash,
)

SUFFIXES = (".yaml", ".yml", ".toml")
_TOP_KEYS = ("name", "trigger", "steps", "description")
_STEP_KEYS = ("agent", "name", "fallback", "retry", "timeout", "input")
_RETRY_KEYS = ("attempts", "base", "max")
_MISSING: Any = object()


def load_topology(path: str | Path) -> Topology:
    """Read and check one topology file.

    Raises:
        TopologyError: the file cannot be read or parsed, or its content is wrong.
    """
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise TopologyError(f"{path}: not a topology file (expected {', '.join(SUFFIXES)})")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TopologyError(f"{path}: cannot read: {exc}") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except tomllib.TOMLDecodeError as exc:
        raise TopologyError(f"{path}: invalid TOML: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = getattr(exc, "problem", None) or exc
        raise TopologyError(f"{path}: invalid YAML: {where}{what}") from None
    return parse_topology(data, str(path))


def load_directory(directory: str | Path) -> list[Topology]:
    """Every topology file in ``directory`` (not recursive), sorted by file name.

    Raises:
        TopologyError: a file is wrong, or two files define the same name.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise TopologyError(f"{directory}: not a directory")
    found: dict[str, Path] = {}
    topologies = []
    for path in sorted(p for p in directory.iterdir() if p.suffix in SUFFIXES):
        topology = load_topology(path)
        if topology.name in found:
            raise TopologyError(
                f"{path}: topology {topology.name!r} is already defined in {found[topology.name]}"
            )
        found[topology.name] = path
        topologies.append(topology)
    return topologies


def parse_topology(data: Any, source: str) -> Topology:
    """Build a topology from parsed file content; ``source`` names it in errors.

    Raises:
        TopologyError: ``<source>: <path inside>: <what is wrong>``.
    """
    return _Parser(source).topology(data)


def encode_topology(topology: Topology) -> bytes:
    """The topology as JSON bytes, for KV ``bus_topologies``."""
    return encode_json(topology)


def decode_topology(data: bytes) -> Topology:
    """Read a topology stored by ``encode_topology`` (and check it again: a custom merge must
    import in this process).

    Raises:
        TopologyError: the bytes are not a valid topology.
    """
    try:
        topology = decode(data, Topology, JSON)
    except InvalidInputError as exc:
        raise TopologyError(f"stored topology is invalid: {exc}") from None
    check(topology)
    return topology


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, reason: str) -> NoReturn:
        raise TopologyError(f"{self.source}: {path}: {reason}")

    def topology(self, data: Any) -> Topology:
        data = self.mapping(data, "(top level)", _TOP_KEYS)
        name = data.get("name", Path(self.source).stem)
        if not isinstance(name, str) or not name:
            self.fail("name", "must be a non-empty string")
        trigger = data.get("trigger", [])
        triggers = [trigger] if isinstance(trigger, str) else trigger
        if not isinstance(triggers, list) or not all(isinstance(t, str) for t in triggers):
            self.fail("trigger", "must be an event type or a list of them")
        for i, pattern in enumerate(triggers):
            if (reason := trigger_problem(pattern)) is not None:
                self.fail(f"trigger[{i}]" if isinstance(trigger, list) else "trigger", reason)
        if "steps" not in data:
            self.fail("(top level)", "missing key 'steps'")
        if not isinstance(data["steps"], list):
            self.fail("steps", "must be a list of steps")
        topology = Topology(name, self.node(data["steps"], "steps"), tuple(triggers))
        check(topology)
        return Topology(name, topology.root, topology.trigger, content_hash(topology))

    def mapping(self, data: Any, path: str, keys: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(data, dict):
            self.fail(path, f"expected a mapping, got {_kind(data)}")
        for key in data:
            if key not in keys:
                self.fail(path, f"unknown key {key!r} (expected one of {', '.join(keys)})")
        return data

    def node(self, data: Any, path: str) -> Node:
        node: Node
        if isinstance(data, list):
            node = Sequential(tuple(self.node(d, f"{path}[{i}]") for i, d in enumerate(data)))
        elif isinstance(data, dict) and "agent" in data:
            node = self.step(data, path)
        elif isinstance(data, dict) and "parallel" in data:
            data = self.mapping(data, path, ("parallel", "merge", "quorum"))
            branches = self.typed(data, path, "parallel", list)
            node = Parallel(
                tuple(self.node(d, f"{path}.parallel[{i}]") for i, d in enumerate(branches)),
                self.typed(data, path, "merge", str, "by_name"),
                self.typed(data, path, "quorum", int, None),
            )
        elif isinstance(data, dict) and "when" in data:
            data = self.mapping(data, path, ("when", "then", "otherwise"))
            if "then" not in data:
                self.fail(path, "missing key 'then'")
            otherwise = data.get("otherwise")
            node = Conditional(
                self.typed(data, path, "when", str),
                self.node(data["then"], f"{path}.then"),
                None if otherwise is None else self.node(otherwise, f"{path}.otherwise"),
            )
        elif isinstance(data, dict):
            keys = ", ".join(map(repr, data)) or "none"
            self.fail(path, f"expected a step ('agent'), 'parallel' or 'when'; got keys {keys}")
        else:
            self.fail(path, f"expected a step, 'parallel', 'when' or a list, got {_kind(data)}")
        if (found := problem(node)) is not None:
            field, reason = found
            self.fail(f"{path}.{field}" if field else path, reason)
        return node

    def step(self, data: dict[str, Any], path: str) -> Step:
        data = self.mapping(data, path, _STEP_KEYS)
        retry = data.get("retry")
        if isinstance(retry, int) and not isinstance(retry, bool):
            retry = {"attempts": retry}
        if retry is not None:
            retry = self.mapping(retry, f"{path}.retry", _RETRY_KEYS)
            where = f"{path}.retry"
            retry = StepRetry(
                attempts=self.typed(retry, where, "attempts", int, 1),
                base=float(self.typed(retry, where, "base", float, 0.5)),
                max=float(self.typed(retry, where, "max", float, 10.0)),
            )
        timeout = self.typed(data, path, "timeout", float, None)
        return Step(
            agent=self.typed(data, path, "agent", str),
            name=self.typed(data, path, "name", str, None),
            fallback=self.typed(data, path, "fallback", str, None),
            retry=retry,
            timeout=None if timeout is None else float(timeout),
            input=self.typed(data, path, "input", str, None),
        )

    def typed(
        self, data: dict[str, Any], path: str, key: str, tp: type, default: Any = _MISSING
    ) -> Any:
        value = data.get(key, default)
        if value is _MISSING:
            self.fail(path, f"missing key {key!r}")
        if value is None and default is None:
            return None
        numeric = tp is float and isinstance(value, int | float)
        if isinstance(value, bool) or not (isinstance(value, tp) or numeric):
            self.fail(f"{path}.{key}", f"expected {_KINDS[tp]}, got {_kind(value)}")
        return value


_KINDS: dict[type, str] = {str: "a string", int: "an integer", float: "a number", list: "a list"}


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), f"a {type(value).__name__}"
    )
