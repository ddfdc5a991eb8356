"""Conditions: a small, safe expression language over plain data. Never ``eval``.

Grammar (keywords are lower case)::

    expr    := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | test
    test    := "exists" PATH
             | operand (("==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not" "in") operand)?
    operand := PATH | NUMBER | STRING | "true" | "false" | "null"
             | "[" (operand ("," operand)*)? "]" | "(" expr ")"

A ``PATH`` is dotted keys and list indexes into the current value: ``spec.complexity``,
``items.0``. A missing path is ``null``. Ordering comparisons with ``null`` or between
unrelated types are false, never errors; ``in`` / ``not in`` are false when the right side is
not a list, string or mapping; a bare operand tests its truthiness.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any, NamedTuple

import msgspec

from bus.errors import TopologyError
from bus.workflow.exprtree import (
    BoolOp,
    Compare,
    Const,
    Exists,
    ListOf,
    Node,
    Not,
    Path,
    truthy,
)

_TOKEN = re.compile(
    r"""(?P<ws>\s+)
    |(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
    |(?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    |(?P<path>[A-Za-z_][\w-]*(?:\.[\w-]+)*)
    |(?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,)""",
    re.VERBOSE,
)
_PATH = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")
_KEYWORDS = frozenset({"and", "or", "not", "in", "exists", "true", "false", "null"})
_CONSTANTS: dict[str, Any] = {"true": True, "false": False, "null": None}
_COMPARE = frozenset({"==", "!=", "<", "<=", ">", ">="})


class ExprError(TopologyError):
    """An expression does not parse; ``column`` (1-based) is where it went wrong."""

    def __init__(self, text: str, column: int, problem: str) -> None:
        super().__init__(f"bad expression {text!r}: {problem} at column {column}")
        self.text = text
        self.column = column
        self.problem = problem


def parse_path(text: str) -> tuple[str, ...]:
    """Split a dotted path (``spec.items.0``) into its keys.

    Raises:
        ValueError: the text is not a dotted path.
    """
    if not _PATH.fullmatch(text):
        raise ValueError(f"{text!r} is not a dotted path like 'spec.items.0'")
    return tuple(text.split("."))


# -- tokenizer and parser ----------------------------------------------------------------


class _Token(NamedTuple):
    kind: str  # number | string | path | op | kw | end
    text: str
    column: int


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            if text[pos] in "'\"":
                raise ExprError(text, pos + 1, "unterminated string")
            raise ExprError(text, pos + 1, f"unexpected character {text[pos]!r}")
        kind = m.lastgroup or ""
        if kind != "ws":
            if kind == "path" and m.group() in _KEYWORDS:
                kind = "kw"
            out.append(_Token(kind, m.group(), pos + 1))
        pos = m.end()
    out.append(_Token("end", "", len(text) + 1))
    return out


def _unquote(literal: str) -> str:
    escapes = {"n": "\n", "t": "\t"}
    return re.sub(r"\\(.)", lambda m: escapes.get(m[1], m[1]), literal[1:-1])


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.pos]

    def take(self, *texts: str) -> bool:
        if self.tok.kind in ("op", "kw") and self.tok.text in texts:
            self.pos += 1
            return True
        return False

    def fail(self, problem: str) -> ExprError:
        found = "the end" if self.tok.kind == "end" else repr(self.tok.text)
        return ExprError(self.text, self.tok.column, f"{problem}, found {found}")

    def parse(self) -> Node:
        node = self.or_()
        if self.tok.kind != "end":
            raise self.fail("expected 'and', 'or' or the end")
        return node

    def or_(self) -> Node:
        return self.chain("or", self.and_)

    def and_(self) -> Node:
        return self.chain("and", self.not_)

    def chain(self, op: str, part: Callable[[], Node]) -> Node:
        operands = [part()]
        while self.take(op):
            operands.append(part())
        return operands[0] if len(operands) == 1 else BoolOp(op, tuple(operands))

    def not_(self) -> Node:
        if self.take("not"):
            return Not(self.not_())
        return self.test()

    def test(self) -> Node:
        if self.take("exists"):
            if self.tok.kind != "path":
                raise self.fail("expected a path after 'exists'")
            return Exists(self.path())
        left = self.operand()
        if self.tok.text in _COMPARE and self.tok.kind == "op":
            op = self.tok.text
            self.pos += 1
            return Compare(op, left, self.operand())
        if self.take("in"):
            return Compare("in", left, self.operand())
        if (
            self.tok.kind == "kw"
            and self.tok.text == "not"
            and self.tokens[self.pos + 1].text == "in"
        ):
            self.pos += 2
            return Compare("not in", left, self.operand())
        return left

    def path(self) -> Path:
        keys = tuple(self.tok.text.split("."))
        self.pos += 1
        return Path(keys)

    def operand(self) -> Node:
        tok = self.tok
        if tok.kind == "path":
            return self.path()
        if tok.kind == "number":
            self.pos += 1
            number = float(tok.text)
            return Const(int(number) if number.is_integer() and "." not in tok.text else number)
        if tok.kind == "string":
            self.pos += 1
            return Const(_unquote(tok.text))
        if tok.kind == "kw" and tok.text in _CONSTANTS:
            self.pos += 1
            return Const(_CONSTANTS[tok.text])
        if self.take("["):
            items: list[Node] = []
            while not self.take("]"):
                if items and not self.take(","):
                    raise self.fail("expected ',' or ']'")
                items.append(self.operand())
            return ListOf(tuple(items))
        if self.take("("):
            inner = self.or_()
            if not self.take(")"):
                raise self.fail("expected ')'")
            return inner
        raise self.fail("expected a value")


class Expr(msgspec.Struct, frozen=True):
    """A compiled condition: its source text and its syntax tree."""

    text: str
    root: Node

    def evaluate(self, value: Any) -> bool:
        """Whether the condition holds for ``value`` (plain data); never raises."""
        return truthy(self.root.eval(value))


@lru_cache(maxsize=1024)
def compile_expr(text: str) -> Expr:
    """Parse ``text`` once (results are cached by text).

    Raises:
        ExprError: a ``TopologyError`` giving the 1-based column of the mistake.
    """
    if not text.strip():
        raise ExprError(text, 1, "empty expression")
    return Expr(text, _Parser(text).parse())
