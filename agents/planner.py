"""The planner agent: a spec of the Python code under a path, read with ``ast``.

The spec lists each module's lines and functions with their cyclomatic complexity, and its
top-level ``complexity`` (the maximum over all functions) is what the conditional topology
branches on (``when: "complexity > 5"``). ``path`` passes through so the next step of a
sequential workflow still knows what to work on.

Cyclomatic complexity of one function is 1 plus one for each decision point in its body:

- ``if``/``elif``, a conditional expression (``a if c else b``), ``for``/``async for``,
  ``while``, each ``except`` clause and each ``assert`` (an implicit branch);
- each extra operand of a boolean operator (``a and b or c`` adds 2);
- each ``for`` and each ``if`` clause of a comprehension;
- each ``case`` of a ``match`` except a final bare ``case _:``.

``with``, ``try``/``finally`` and loop ``else`` add nothing. Nested functions and classes are
measured on their own (``outer.inner``, ``Class.method``) and add nothing to the enclosing
function; lambdas are part of the function they appear in. Code with no function has
complexity 0.
"""

from __future__ import annotations

import ast
from pathlib import Path

import anyio.to_thread
import msgspec

from agents._source import python_files, relative, resolve
from bus import Agent

agent = Agent(
    "planner",
    version="1",
    description="Spec of Python sources: modules, functions, lines, cyclomatic complexity",
    timeout=60.0,
)


class PlanRequest(msgspec.Struct, frozen=True):
    """What to plan: a file or directory (relative to the agent's working directory)."""

    path: str


class Function(msgspec.Struct, frozen=True):
    name: str
    lineno: int
    complexity: int


class Module(msgspec.Struct, frozen=True):
    path: str
    lines: int
    functions: tuple[Function, ...] = ()


class Totals(msgspec.Struct, frozen=True):
    modules: int
    functions: int
    lines: int


class Spec(msgspec.Struct, frozen=True):
    """The planner's output.

    Attributes:
        path: the input path, passed through for the next step.
        complexity: the highest cyclomatic complexity of any function (0: no functions).
        modules: one entry per parsed file, paths relative to ``path``.
        totals: counts over all modules.
        errors: files that could not be parsed, with the reason.
    """

    path: str
    complexity: int
    modules: tuple[Module, ...]
    totals: Totals
    errors: tuple[str, ...] = ()


@agent.handler
async def plan(request: PlanRequest) -> Spec:
    """Parse every Python file under ``request.path`` and measure its functions."""
    return await anyio.to_thread.run_sync(build_spec, request.path)


def build_spec(path: str) -> Spec:
    """The spec of the sources under ``path`` (blocking; the handler runs it in a thread).

    Raises:
        PermanentError: ``path`` is empty or does not exist.
    """
    root = resolve(path)
    modules: list[Module] = []
    errors: list[str] = []
    for file in python_files(root):
        name = relative(file, root)
        try:
            modules.append(_module(file, name))
        except (SyntaxError, ValueError, UnicodeDecodeError) as exc:
            errors.append(f"{name}: {exc}")
    functions = [f for m in modules for f in m.functions]
    return Spec(
        path=path,
        complexity=max((f.complexity for f in functions), default=0),
        modules=tuple(modules),
        totals=Totals(
            modules=len(modules),
            functions=len(functions),
            lines=sum(m.lines for m in modules),
        ),
        errors=tuple(errors),
    )


def _module(file: Path, name: str) -> Module:
    source = file.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=name)
    functions = [
        Function(name=qualname, lineno=node.lineno, complexity=complexity(node))
        for qualname, node in _functions(tree, "")
    ]
    return Module(path=name, lines=len(source.splitlines()), functions=tuple(functions))


FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


def _functions(node: ast.AST, prefix: str) -> list[tuple[str, FunctionNode]]:
    found: list[tuple[str, FunctionNode]] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, FunctionNode):
            name = prefix + child.name
            found.append((name, child))
            found.extend(_functions(child, name + "."))
        elif isinstance(child, ast.ClassDef):
            found.extend(_functions(child, prefix + child.name + "."))
        else:
            found.extend(_functions(child, prefix))
    return found


def complexity(function: FunctionNode) -> int:
    """Cyclomatic complexity of one function, by the rule in this module's docstring."""
    counter = _DecisionCounter()
    for statement in function.body:
        counter.visit(statement)
    return 1 + counter.decisions


class _DecisionCounter(ast.NodeVisitor):
    def __init__(self) -> None:
        self.decisions = 0

    def _branch(self, node: ast.AST) -> None:
        self.decisions += 1
        self.generic_visit(node)

    visit_If = visit_IfExp = visit_For = visit_AsyncFor = visit_While = _branch
    visit_ExceptHandler = visit_Assert = _branch

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        self.decisions += len(node.values) - 1
        self.generic_visit(node)

    def visit_comprehension(self, node: ast.comprehension) -> None:
        self.decisions += 1 + len(node.ifs)
        self.generic_visit(node)

    def visit_Match(self, node: ast.Match) -> None:
        cases = node.cases
        if cases and _is_wildcard(cases[-1]):
            cases = cases[:-1]
        self.decisions += len(cases)
        self.generic_visit(node)

    def _skip(self, node: ast.AST) -> None:
        """Nested functions and classes are measured on their own."""

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _skip


def _is_wildcard(case: ast.match_case) -> bool:
    pattern = case.pattern
    return (
        case.guard is None
        and isinstance(pattern, ast.MatchAs)
        and pattern.pattern is None
        and pattern.name is None
    )
