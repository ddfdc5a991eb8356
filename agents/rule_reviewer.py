"""The rule-based reviewer: ranks complexity and lint findings into a review, offline.

It is the ``fallback`` of the model reviewer in the conditional topology, and a useful agent
on its own: deterministic, instant, no network. The rules:

- a function with cyclomatic complexity above 10 is a high-severity issue, above 5 a medium
  one (the threshold the conditional topology branches on);
- lint findings are grouped by rule; syntax errors and pyflakes' undefined names, misplaced
  statements and redefinitions (``E9``, ``F63``, ``F7``, ``F82``) are high, other statement
  problems, unused variables and bugbear (``E7``, ``F841``, ``B``) are medium, the rest
  (style, unused imports) low;
- the score starts at 100 and loses 12/5 per high/medium function and 10/3/1 per high/medium/
  low finding (at most 5 findings counted per rule); it never goes below 0.
"""

from __future__ import annotations

from agents._review import Evidence, Issue, Review, ReviewRequest, Severity, gather
from agents.linter import Finding
from bus import Agent

agent = Agent(
    "rule-reviewer",
    version="1",
    description="Offline review: complexity and lint findings ranked by severity",
    timeout=150.0,
)

TOP = 10
_ORDER: dict[Severity, int] = {"high": 0, "medium": 1, "low": 2}
_FUNCTION_PENALTY: dict[Severity, int] = {"high": 12, "medium": 5, "low": 0}
_FINDING_PENALTY: dict[Severity, int] = {"high": 10, "medium": 3, "low": 1}
_COUNTED_PER_RULE = 5


@agent.handler
async def review(request: ReviewRequest) -> Review:
    """Review the code under ``request.path`` from its spec and lint findings."""
    return rank(await gather(request))


def rank(evidence: Evidence) -> Review:
    """The rule-based review of ``evidence`` (pure: same evidence, same review)."""
    scored: list[tuple[int, Issue]] = []
    for module in evidence.spec.modules:
        for function in module.functions:
            severity = complexity_severity(function.complexity)
            if severity != "low":
                issue = Issue(
                    severity=severity,
                    kind="complexity",
                    location=f"{module.path}:{function.lineno}",
                    message=f"{function.name} has cyclomatic complexity {function.complexity}",
                )
                scored.append((_FUNCTION_PENALTY[severity], issue))
    first = _first_by_rule(evidence.lint.findings)
    for code, count in evidence.lint.by_rule.items():
        severity = lint_severity(code)
        example = first.get(code)
        issue = Issue(
            severity=severity,
            kind="lint",
            location=f"{example.file}:{example.line}" if example else "",
            message=f"{code} x{count}" + (f": {example.message}" if example else ""),
        )
        scored.append((_FINDING_PENALTY[severity] * min(count, _COUNTED_PER_RULE), issue))
    scored.sort(key=lambda pair: (_ORDER[pair[1].severity], -pair[0], pair[1].location))
    score = max(0, 100 - sum(penalty for penalty, _ in scored))
    issues = tuple(issue for _, issue in scored)
    return Review(
        path=evidence.spec.path,
        source="rules",
        score=score,
        summary=_summary(evidence, score),
        top_issues=issues[:TOP],
        recommendations=_recommendations(evidence, issues),
    )


def complexity_severity(complexity: int) -> Severity:
    return "high" if complexity > 10 else "medium" if complexity > 5 else "low"


def lint_severity(code: str) -> Severity:
    if code == "syntax-error" or code.startswith(("E9", "F63", "F7", "F82")):
        return "high"
    if code.startswith(("E7", "F841", "B")):
        return "medium"
    return "low"


def _first_by_rule(findings: tuple[Finding, ...]) -> dict[str, Finding]:
    first: dict[str, Finding] = {}
    for finding in findings:
        first.setdefault(finding.code, finding)
    return first


def _summary(evidence: Evidence, score: int) -> str:
    totals = evidence.spec.totals
    parts = [f"{totals.modules} modules, {totals.functions} functions, {totals.lines} lines"]
    functions = [(f.complexity, f.name) for m in evidence.spec.modules for f in m.functions]
    if functions:
        complexity, name = max(functions)
        parts.append(f"most complex function {name} (complexity {complexity})")
    lint = evidence.lint
    parts.append(f"ruff reports {lint.total} findings in {len(lint.by_rule)} rules")
    return "; ".join(parts) + f". Score {score}/100."


def _recommendations(evidence: Evidence, issues: tuple[Issue, ...]) -> tuple[str, ...]:
    advice: list[str] = []
    for issue in issues:
        if issue.kind == "complexity" and len(advice) < 3:
            name = issue.message.split(" has ", 1)[0]
            advice.append(
                f"Split {name} ({issue.location}) into smaller functions: "
                "one decision per helper, aim for complexity 10 or less."
            )
    if evidence.lint.fixable:
        advice.append(
            f"Run `ruff check --fix {evidence.lint.path}`: "
            f"{evidence.lint.fixable} findings fix themselves."
        )
    advice.extend(
        f"Fix {issue.message}" + (f" (first at {issue.location})" if issue.location else "")
        for issue in issues
        if issue.kind == "lint" and issue.severity != "low"
    )
    if not advice:
        advice.append("Nothing pressing: keep functions small and ruff clean.")
    return tuple(advice)
