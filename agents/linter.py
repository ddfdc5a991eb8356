"""The linter agent: ``ruff check`` on a path, findings counted by rule.

Ruff runs in a subprocess with the configuration it finds for the files (so a project's own
``[tool.ruff]`` applies), without its cache (nothing is written into the linted tree). The
input is ``{"path": ...}``; any other fields are ignored, so the planner's spec (which carries
``path``) can feed it directly in a sequential workflow.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections import Counter
from pathlib import Path

import anyio
import msgspec

from agents._source import base_dir, resolve
from bus import Agent, PermanentError

RUFF_TIMEOUT = 120.0

agent = Agent(
    "linter",
    version="1",
    description="ruff check on a path: findings by rule",
    timeout=RUFF_TIMEOUT + 10.0,
)


class LintRequest(msgspec.Struct, frozen=True):
    """What to lint; ``limit`` caps how many findings are listed one by one."""

    path: str
    limit: int = 20


class Finding(msgspec.Struct, frozen=True):
    file: str
    line: int
    column: int
    code: str
    message: str


class LintReport(msgspec.Struct, frozen=True):
    """The linter's output.

    Attributes:
        path: the input path, passed through for the next step.
        total: number of findings.
        by_rule: findings per rule code (``F401``), most frequent first.
        findings: the first ``limit`` findings, in ruff's order (by file, then line).
        fixable: findings ``ruff check --fix`` can fix (safe fixes only).
    """

    path: str
    total: int
    by_rule: dict[str, int]
    findings: tuple[Finding, ...]
    fixable: int = 0


class _Location(msgspec.Struct):
    row: int
    column: int


class _Fix(msgspec.Struct):
    applicability: str = ""


class _RuffFinding(msgspec.Struct):
    filename: str
    location: _Location
    message: str
    code: str | None = None
    fix: _Fix | None = None


_decode_ruff = msgspec.json.Decoder(list[_RuffFinding]).decode


@agent.handler
async def check(request: LintRequest) -> LintReport:
    """Run ruff on ``request.path`` and summarise what it finds."""
    return await lint(request.path, limit=request.limit)


async def lint(path: str, *, limit: int = 20) -> LintReport:
    """Lint ``path`` with ruff (also used by the reviewers to gather findings).

    Raises:
        PermanentError: the path does not exist, ruff is not installed, ruff failed (a broken
            configuration, say) or ran past ``RUFF_TIMEOUT``.
    """
    root = resolve(path)
    command = [ruff_binary(), "check", "--output-format", "json", "--no-cache", "--exit-zero"]
    with anyio.move_on_after(RUFF_TIMEOUT) as scope:
        done = await anyio.run_process([*command, str(root)], cwd=base_dir(root), check=False)
    if scope.cancelled_caught:
        raise PermanentError(f"ruff ran for more than {RUFF_TIMEOUT:.0f} s on {path}")
    if done.returncode != 0:
        detail = done.stderr.decode(errors="replace").strip().splitlines()
        raise PermanentError(f"ruff failed ({done.returncode}): {' '.join(detail[-3:])}")
    try:
        items = _decode_ruff(done.stdout)
    except msgspec.DecodeError as exc:
        raise PermanentError(f"unexpected ruff output: {exc}") from None
    findings = [_finding(item, base_dir(root)) for item in items]
    counts = Counter(f.code for f in findings)
    return LintReport(
        path=path,
        total=len(findings),
        by_rule=dict(counts.most_common()),
        findings=tuple(findings[: max(limit, 0)]),
        fixable=sum(item.fix is not None and item.fix.applicability == "safe" for item in items),
    )


def ruff_binary(executable: str = sys.executable, search_path: str | None = None) -> str:
    """The ruff executable next to ``executable`` (this venv's), else the one on ``PATH``
    (or on ``search_path`` when given).

    Raises:
        PermanentError: ruff is installed in neither place.
    """
    beside = Path(executable).with_name("ruff.exe" if os.name == "nt" else "ruff")
    if beside.is_file():
        return str(beside)
    found = shutil.which("ruff", path=search_path)
    if found is None:
        raise PermanentError("ruff is not installed: pip install 'agent-bus[agents]'")
    return found


def _finding(item: _RuffFinding, base: Path) -> Finding:
    file = Path(item.filename)
    if file.is_relative_to(base):
        file = file.relative_to(base)
    return Finding(
        file=file.as_posix(),
        line=item.location.row,
        column=item.location.column,
        code=item.code or "syntax-error",
        message=item.message,
    )
