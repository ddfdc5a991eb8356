"""What the two reviewers share: their input, their output and the evidence they review.

Both accept the planner's spec (``path``, ``complexity``, ``modules``), the linter's report
(``path``, ``by_rule``, ``findings``) or just ``{"path": ...}``, and gather whatever is missing
themselves (the spec with ``ast``, findings with ruff), so they work in any position of a
workflow: in the conditional topology they run in parallel with the linter, on the spec.
Both return a ``Review``, so a topology's ``fallback`` from one to the other changes nothing
downstream.
"""

from __future__ import annotations

from typing import Any, Literal

import anyio.to_thread
import msgspec

from agents.linter import Finding, LintReport, lint
from agents.planner import Module, Spec, Totals, build_spec

Severity = Literal["high", "medium", "low"]


class ReviewRequest(msgspec.Struct, frozen=True):
    """A reviewer's input; every field but ``path`` is optional evidence already gathered."""

    path: str
    complexity: int | None = None
    modules: tuple[Module, ...] | None = None
    totals: Totals | None = None
    by_rule: dict[str, int] | None = None
    findings: tuple[Finding, ...] | None = None
    total: int | None = None


class Issue(msgspec.Struct, frozen=True):
    """One problem worth a reader's time: where, how bad, what."""

    severity: Severity
    kind: str
    location: str
    message: str


class Review(msgspec.Struct, frozen=True):
    """A reviewer's output.

    Attributes:
        path: the input path, passed through.
        source: ``rules`` (the rule-based reviewer) or ``llm`` (the model reviewer).
        score: 0 (rewrite it) to 100 (nothing to say).
        summary: one paragraph for a human.
        top_issues: the most important problems first.
        recommendations: what to do about them, most useful first.
        model: the model that wrote the review (``llm`` only).
    """

    path: str
    source: Literal["rules", "llm"]
    score: int
    summary: str
    top_issues: tuple[Issue, ...] = ()
    recommendations: tuple[str, ...] = ()
    model: str = ""


class Evidence(msgspec.Struct, frozen=True):
    """The spec and the lint report of the code under review."""

    spec: Spec
    lint: LintReport


async def gather(request: ReviewRequest) -> Evidence:
    """The evidence for ``request``: what it carries, plus what is missing, computed."""
    if request.modules is not None and request.totals is not None:
        spec = Spec(
            path=request.path,
            complexity=request.complexity or 0,
            modules=request.modules,
            totals=request.totals,
        )
    else:
        spec = await anyio.to_thread.run_sync(build_spec, request.path)
    if request.by_rule is not None and request.findings is not None:
        report = LintReport(
            path=request.path,
            total=request.total if request.total is not None else sum(request.by_rule.values()),
            by_rule=request.by_rule,
            findings=request.findings,
        )
    else:
        report = await lint(request.path)
    return Evidence(spec=spec, lint=report)


def summarize(evidence: Evidence, *, functions: int = 10) -> dict[str, Any]:
    """A compact, JSON-ready digest of ``evidence`` (what a model is shown)."""
    ranked = sorted(
        (
            (f.complexity, f"{m.path}:{f.lineno} {f.name}")
            for m in evidence.spec.modules
            for f in m.functions
        ),
        reverse=True,
    )
    return {
        "path": evidence.spec.path,
        "totals": msgspec.to_builtins(evidence.spec.totals),
        "max_complexity": evidence.spec.complexity,
        "most_complex_functions": [
            {"function": where, "complexity": score} for score, where in ranked[:functions]
        ],
        "lint_findings_by_rule": evidence.lint.by_rule,
        "lint_findings": [
            f"{f.file}:{f.line} {f.code} {f.message}" for f in evidence.lint.findings
        ],
    }
