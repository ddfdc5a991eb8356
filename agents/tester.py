"""The tester agent: pytest on a path in a subprocess, with a timeout.

pytest runs with this interpreter (``sys.executable -m pytest``) in the path's directory, so the
project's own pytest configuration applies; no cache and no bytecode are written into the tree.
The input is ``{"path": ...}`` (other fields are ignored, so the linter's or planner's output,
which carry ``path``, feed it directly); failing tests are a result, not an error.

A suite that runs past its timeout is a ``PermanentError``, not a transient one: the same suite
on the same code will hang again, and retrying would only hold a replica for longer. The
topology can still give the step a ``fallback``.
"""

from __future__ import annotations

import os
import re
import sys
import time

import anyio
import msgspec

from agents._source import base_dir, resolve
from bus import Agent, PermanentError

DEFAULT_TIMEOUT = 60.0
MAX_TIMEOUT = 600.0

agent = Agent(
    "tester",
    version="1",
    description="pytest on a path: passed/failed counts and failing tests",
    timeout=MAX_TIMEOUT + 10.0,
)


class SuiteRequest(msgspec.Struct, frozen=True):
    """What to test; ``timeout`` (seconds, at most ``MAX_TIMEOUT``) bounds the whole run."""

    path: str
    timeout: float = DEFAULT_TIMEOUT


class SuiteReport(msgspec.Struct, frozen=True):
    """The tester's output.

    Attributes:
        path: the input path, passed through for the next step.
        passed, failed, errors, skipped: counts from pytest's summary line (``errors`` are
            errors during collection or in fixtures).
        total: ``passed + failed + errors + skipped``.
        failures: node ids of the failed and erroring tests (``tests/test_x.py::test_y``).
        exit_code: pytest's exit code (0 all passed, 1 some failed, 2 interrupted by errors,
            5 no tests collected).
        summary: pytest's final summary line.
        duration_s: wall time of the run.
    """

    path: str
    passed: int
    failed: int
    errors: int
    skipped: int
    total: int
    failures: tuple[str, ...]
    exit_code: int
    summary: str
    duration_s: float


_COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped)\b")
_SUMMARY = re.compile(r"\bin \d+(?:\.\d+)?s\b")
_FAILURE = re.compile(r"^(?:FAILED|ERROR) ([^\s\[]+(?:\[.*?\])?)(?: - |$)")


@agent.handler
async def run(request: SuiteRequest) -> SuiteReport:
    """Run the tests under ``request.path`` and report the outcome."""
    return await run_suite(request.path, timeout=request.timeout)


async def run_suite(path: str, *, timeout: float = DEFAULT_TIMEOUT) -> SuiteReport:
    """Run pytest on ``path`` and parse its summary.

    Raises:
        PermanentError: the path does not exist, the suite ran past ``timeout``, or pytest
            itself failed (internal or usage error, no summary).
    """
    root = resolve(path)
    limit = min(max(timeout, 1.0), MAX_TIMEOUT)
    command = [sys.executable, "-m", "pytest", "-q", "-rfE", "--color=no"]
    command += ["-p", "no:cacheprovider", str(root)]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.monotonic()
    with anyio.move_on_after(limit) as scope:
        done = await anyio.run_process(command, cwd=base_dir(root), env=env, check=False)
    if scope.cancelled_caught:
        raise PermanentError(f"the test suite under {path} ran for more than {limit:g} s")
    return parse(
        path,
        done.stdout.decode(errors="replace"),
        exit_code=done.returncode,
        duration_s=round(time.monotonic() - started, 3),
        stderr=done.stderr.decode(errors="replace"),
    )


def parse(
    path: str, output: str, *, exit_code: int, duration_s: float, stderr: str = ""
) -> SuiteReport:
    """Build the report from pytest's ``-q -rfE`` output (pure; tested on its own)."""
    lines = output.splitlines()
    summary = next((line.strip("= ") for line in reversed(lines) if _SUMMARY.search(line)), "")
    if exit_code in (3, 4) or not summary:
        tail = " ".join((stderr or output).strip().splitlines()[-3:])
        raise PermanentError(f"pytest failed (exit {exit_code}): {tail}")
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    for number, word in _COUNT.findall(summary):
        counts["errors" if word.startswith("error") else word] += int(number)
    failures = tuple(m.group(1) for m in map(_FAILURE.match, lines) if m)
    return SuiteReport(
        path=path,
        total=sum(counts.values()),
        failures=failures,
        exit_code=exit_code,
        summary=summary,
        duration_s=duration_s,
        passed=counts["passed"],
        failed=counts["failed"],
        errors=counts["errors"],
        skipped=counts["skipped"],
    )
