"""The syntax tree of a condition and its evaluation over plain data.

Nodes are frozen; ``eval`` never raises: a missing path is ``None``, an ordering comparison
with ``None`` or between unrelated types is false, ``in`` on a non-container is false.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec


def get_path(value: Any, keys: tuple[str, ...]) -> Any:
    """Follow ``keys`` into mappings and lists; ``None`` when any key is missing."""
    for key in keys:
        if isinstance(value, dict):
            value = value.get(key)
        elif isinstance(value, list | tuple) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
    return value


class Path(msgspec.Struct, frozen=True):
    keys: tuple[str, ...]

    def eval(self, value: Any) -> Any:
        return get_path(value, self.keys)


class Const(msgspec.Struct, frozen=True):
    value: Any

    def eval(self, value: Any) -> Any:
        return self.value


class ListOf(msgspec.Struct, frozen=True):
    items: tuple[Node, ...]

    def eval(self, value: Any) -> Any:
        return [item.eval(value) for item in self.items]


class Exists(msgspec.Struct, frozen=True):
    path: Path

    def eval(self, value: Any) -> Any:
        return self.path.eval(value) is not None


class Compare(msgspec.Struct, frozen=True):
    op: str
    left: Node
    right: Node

    def eval(self, value: Any) -> Any:
        return _compare(self.op, self.left.eval(value), self.right.eval(value))


class Not(msgspec.Struct, frozen=True):
    operand: Node

    def eval(self, value: Any) -> Any:
        return not truthy(self.operand.eval(value))


class BoolOp(msgspec.Struct, frozen=True):
    op: str  # "and" | "or"
    operands: tuple[Node, ...]

    def eval(self, value: Any) -> Any:
        results = (truthy(o.eval(value)) for o in self.operands)
        return all(results) if self.op == "and" else any(results)


Node = Path | Const | ListOf | Exists | Compare | Not | BoolOp


def truthy(value: Any) -> bool:
    return bool(value)


def _equal(a: Any, b: Any) -> bool:
    # true == 1 would hold in Python; a condition language should not say so.
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return bool(a == b)


def _contains(item: Any, container: Any) -> bool | None:
    if isinstance(container, str):
        return item in container if isinstance(item, str) else None
    if isinstance(container, list | tuple):
        return any(_equal(item, x) for x in container)
    if isinstance(container, dict):
        return isinstance(item, str) and item in container
    return None


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: bool(a < b),
    "<=": lambda a, b: bool(a <= b),
    ">": lambda a, b: bool(a > b),
    ">=": lambda a, b: bool(a >= b),
}


def _compare(op: str, a: Any, b: Any) -> bool:
    if op == "==":
        return _equal(a, b)
    if op == "!=":
        return not _equal(a, b)
    if op in ("in", "not in"):
        found = _contains(a, b)
        return False if found is None else found == (op == "in")
    if a is None or b is None or isinstance(a, bool) or isinstance(b, bool):
        return False
    try:
        return _ORDER[op](a, b)
    except TypeError:
        return False
