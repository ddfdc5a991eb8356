"""The planner agent: its complexity rule, and its spec of the sample project."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import msgspec
import pytest

from agents import planner
from bus import PermanentError

SAMPLE = Path(__file__).parents[1] / "examples" / "sample_project"


def measure(source: str) -> int:
    tree = ast.parse(textwrap.dedent(source))
    function = tree.body[0]
    assert isinstance(function, ast.FunctionDef)
    return planner.complexity(function)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def f():\n    return 1\n", 1),
        (
            "def f(a):\n    if a:\n        return 1\n    elif a > 2:\n        return 2\n"
            "    else:\n        return 3\n",
            3,
        ),
        ("def f(a, b, c):\n    return a and b or c\n", 3),
        ("def f(a):\n    return 1 if a else 2\n", 2),
        ("def f(xs):\n    for x in xs:\n        while x:\n            x -= 1\n", 3),
        (
            "def f():\n    try:\n        pass\n    except ValueError:\n        pass\n"
            "    except KeyError:\n        pass\n    finally:\n        pass\n",
            3,
        ),
        ("def f(xs):\n    return [x for x in xs if x if x > 1]\n", 4),
        ("def f(a):\n    assert a\n    with open(a):\n        pass\n", 2),
        (
            "def f(a):\n    match a:\n        case 1:\n            pass\n        case [x]:\n"
            "            pass\n        case _:\n            pass\n",
            3,
        ),
        (
            "def f(a):\n    match a:\n        case 1:\n            pass\n        case _ if a:\n"
            "            pass\n",
            3,
        ),
    ],
    ids=[
        "straight",
        "if-elif",
        "boolops",
        "ifexp",
        "loops",
        "except",
        "comprehension",
        "assert-not-with",
        "match-wildcard",
        "match-guarded-wildcard",
    ],
)
def test_complexity_rule(source: str, expected: int) -> None:
    assert measure(source) == expected


def test_nested_functions_are_measured_on_their_own(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text(
        "class C:\n"
        "    def method(self, a):\n"
        "        def inner(b):\n"
        "            if b:\n"
        "                return b\n"
        "            return 0\n"
        "        return inner(a)\n"
    )
    spec = planner.build_spec(str(tmp_path))
    functions = {f.name: f.complexity for f in spec.modules[0].functions}
    assert functions == {"C.method": 1, "C.method.inner": 2}
    assert spec.complexity == 2


async def test_spec_of_the_sample_project() -> None:
    spec = await planner.plan(planner.PlanRequest(str(SAMPLE)))
    assert spec.path == str(SAMPLE)
    modules = {m.path: m for m in spec.modules}
    assert "inventory/pricing.py" in modules
    assert "simple/greet.py" in modules
    quote = next(f for f in modules["inventory/pricing.py"].functions if f.name == "quote")
    assert quote.complexity == 17
    assert spec.complexity == 17
    assert [f.name for f in modules["inventory/models.py"].functions] == [
        "Order.add",
        "Order.units",
    ]
    assert spec.totals.modules == len(spec.modules)
    assert spec.totals.lines == sum(m.lines for m in spec.modules)
    assert spec.errors == ()


async def test_simple_part_is_below_the_conditional_threshold() -> None:
    spec = await planner.plan(planner.PlanRequest(str(SAMPLE / "simple")))
    assert 0 < spec.complexity <= 5
    assert {m.path for m in spec.modules} == {"greet.py", "test_greet.py"}


def test_unparsable_files_are_reported_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "good.py").write_text("def ok():\n    return 1\n")
    (tmp_path / "bad.py").write_text("def broken(:\n")
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "skipped.py").write_text("def hidden():\n    pass\n")
    spec = planner.build_spec(str(tmp_path))
    assert [m.path for m in spec.modules] == ["good.py"]
    assert len(spec.errors) == 1
    assert spec.errors[0].startswith("bad.py:")


def test_a_missing_path_is_a_permanent_error(tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match="no such file"):
        planner.build_spec(str(tmp_path / "nope"))


def test_the_spec_round_trips_as_plain_data() -> None:
    spec = planner.build_spec(str(SAMPLE / "simple"))
    plain = msgspec.to_builtins(spec)
    assert plain["complexity"] == spec.complexity
    assert plain["path"] == spec.path
    assert msgspec.convert(plain, planner.Spec) == spec
