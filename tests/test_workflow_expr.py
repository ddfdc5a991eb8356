"""The condition language: parsing, evaluation over plain data, errors with their column."""

from __future__ import annotations

from typing import Any

import pytest

from bus.errors import TopologyError
from bus.workflow.expr import ExprError, compile_expr, parse_path

DATA: dict[str, Any] = {
    "complexity": 7,
    "lang": "py",
    "ratio": 0.25,
    "flag": True,
    "off": False,
    "none": None,
    "spec": {"owner": {"name": "ada"}, "tags": ["fast", "safe"]},
    "items": [{"id": 1}, {"id": 2}],
    "empty": [],
    "my-key": 3,
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("complexity > 5", True),
        ("complexity >= 7", True),
        ("complexity < 7", False),
        ("complexity <= 7.0", True),
        ("complexity == 7", True),
        ("complexity != 7", False),
        ("ratio < 1e-1", False),
        ("ratio > -1", True),
        ("lang == 'py'", True),
        ('lang == "py"', True),
        ("lang != 'go'", True),
        ("complexity > 5 and lang == 'py'", True),
        ("complexity > 9 or lang == 'py'", True),
        ("complexity > 9 or lang == 'go'", False),
        ("not complexity > 9", True),
        ("not not flag", True),
        ("not (complexity > 5 and lang == 'py')", False),
        ("(complexity > 9 or flag) and not off", True),
        ("complexity > 9 or flag and off", False),  # and binds tighter than or
        ("spec.owner.name == 'ada'", True),
        ("items.1.id == 2", True),
        ("items.5.id == 2", False),
        ("'fast' in spec.tags", True),
        ("'slow' not in spec.tags", True),
        ("'slow' in spec.tags", False),
        ("lang in ['py', 'go']", True),
        ("lang in []", False),
        ("complexity in [1, 7]", True),
        ("'y' in lang", True),
        ("'owner' in spec", True),
        ("exists spec.owner", True),
        ("exists spec.nobody", False),
        ("exists none", False),
        ("not exists missing", True),
        ("flag", True),
        ("off", False),
        ("empty", False),
        ("missing", False),
        ("missing == null", True),
        ("none == null", True),
        ("flag == true", True),
        ("flag == 1", False),  # a boolean is not a number here
        ("off == false and flag != false", True),
        ("my-key == 3", True),
        ("'a\\'b' == \"a'b\"", True),
    ],
)
def test_evaluate(text: str, expected: bool) -> None:
    assert compile_expr(text).evaluate(DATA) is expected


@pytest.mark.parametrize(
    "text",
    [
        "missing > 1",
        "missing < 1",
        "missing >= missing",
        "lang > 5",  # unrelated types compare false, never raise
        "spec < items",
        "flag > 0",
        "1 in complexity",  # not a container
        "1 not in complexity",
        "1 in lang",
        "missing in spec.tags",
    ],
)
def test_comparisons_that_cannot_hold_are_false_not_errors(text: str) -> None:
    assert compile_expr(text).evaluate(DATA) is False


def test_evaluates_on_any_value_without_raising() -> None:
    expr = compile_expr("a.b > 1 and 'x' in c")
    for value in (None, 3, "text", [1, 2], {"a": 5}, {"a": {"b": 2}, "c": "xyz"}):
        assert expr.evaluate(value) is (value == {"a": {"b": 2}, "c": "xyz"})


def test_compiled_once_per_text() -> None:
    assert compile_expr("complexity > 5") is compile_expr("complexity > 5")


@pytest.mark.parametrize(
    ("text", "column", "problem"),
    [
        ("complexity >> 5", 13, "expected a value"),
        ("complexity > ", 14, "expected a value, found the end"),
        ("(a == 1", 8, "expected ')'"),
        ("a == 1)", 7, "expected 'and', 'or' or the end"),
        ("a = 1", 3, "unexpected character '='"),
        ("lang == 'py", 9, "unterminated string"),
        ("exists 5", 8, "expected a path after 'exists'"),
        ("a in [1 2]", 9, "expected ',' or ']'"),
        ("a and", 6, "expected a value"),
        ("a == 1 b", 8, "expected 'and', 'or' or the end"),
        ("   ", 1, "empty expression"),
    ],
)
def test_errors_give_the_column(text: str, column: int, problem: str) -> None:
    with pytest.raises(ExprError) as caught:
        compile_expr(text)
    assert caught.value.column == column
    assert problem in caught.value.problem
    assert f"at column {column}" in str(caught.value)
    assert isinstance(caught.value, TopologyError)


def test_never_evaluates_python() -> None:
    with pytest.raises(ExprError):
        compile_expr("__import__('os').system('true')")
    # a name that looks like Python is only a path into the data
    assert compile_expr("__class__").evaluate({}) is False


def test_parse_path() -> None:
    assert parse_path("spec.items.0") == ("spec", "items", "0")
    for bad in ("", "a..b", ".a", "a b", "a.*"):
        with pytest.raises(ValueError, match="dotted path"):
            parse_path(bad)
