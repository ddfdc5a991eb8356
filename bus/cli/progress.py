"""Showing runs in a terminal: the ``--json`` shape, tables and the live step view.

On a terminal the live view redraws one line per step in place; otherwise (a pipe, a CI log)
it prints one line per step state change.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, TextIO

from bus.coordinator.client import Notice
from bus.coordinator.notices import StepNotice
from bus.workflow.records import RunRecord, StepRecord

MARK = {
    "pending": "·",
    "dispatched": "▶",
    "retrying": "↻",
    "succeeded": "✔",
    "failed": "✘",
    "skipped": "-",
}


def run_json(record: RunRecord) -> dict[str, Any]:
    """The ``--json`` shape of a run (DESIGN.md, "CLI")."""
    error = None
    if record.error is not None:
        error = {"kind": record.error.kind, "message": record.error.message}
    return {
        "run_id": record.run_id,
        "topology": record.topology,
        "state": record.state,
        "input": record.input,
        "output": record.output,
        "error": error,
        "steps": {
            path: {"agent": s.agent, "state": s.state, "attempts": s.attempts}
            for path, s in record.steps.items()
        },
        "created_at": record.created_at,
        "finished_at": record.finished_at,
    }


def clock(at: float | None) -> str:
    return datetime.fromtimestamp(at).strftime("%H:%M:%S") if at else "-"


def duration(record: RunRecord, now: float | None = None) -> str:
    end = record.finished_at or now or time.time()
    return f"{max(0.0, end - record.created_at):.2f}s"


def step_line(path: str, step: StepRecord | StepNotice) -> str:
    attempts = f"attempt {step.attempts}" if step.attempts > 1 else ""
    error = f"  {step.error.kind}: {step.error.message}" if step.error is not None else ""
    if step.state in ("succeeded", "pending"):
        error = ""
    mark = MARK.get(step.state, "?")
    return f"  {mark} {path:<14} {step.agent:<16} {step.state:<10} {attempts}{error}".rstrip()


def describe(record: RunRecord) -> list[str]:
    """``bus status``: the run, then one line per step."""
    lines = [
        f"run       {record.run_id}",
        f"topology  {record.topology} (version {record.topology_version or '-'})",
        f"state     {record.state}",
        f"started   {clock(record.created_at)}   took {duration(record)}",
    ]
    if record.error is not None:
        lines.append(f"error     {record.error.kind}: {record.error.message}")
    lines.append("steps")
    lines.extend(step_line(path, step) for path, step in sorted(record.steps.items()))
    return lines


def notice_line(notice: Notice) -> str:
    """``bus watch``: one line per notice."""
    if isinstance(notice, StepNotice):
        return f"{clock(notice.at)} {notice.run_id} {step_line(notice.path, notice).strip()}"
    return f"{clock(time.time())} {notice.run_id} run {notice.state} ({notice.topology})"


class ProgressView:
    """The live view of ``bus run --wait`` on ``stream`` (stderr)."""

    def __init__(self, stream: TextIO, *, redraw: bool) -> None:
        self._stream = stream
        self._redraw = redraw
        self._steps: dict[str, StepRecord | StepNotice] = {}
        self._drawn = 0
        self._header = ""

    def update(self, notice: Notice) -> None:
        if isinstance(notice, RunRecord):
            self._header = f"run {notice.run_id} ({notice.topology}): {notice.state}"
            fresh = {p: s for p, s in notice.steps.items() if p not in self._steps}
            self._steps.update(notice.steps)
            if self._redraw:
                self._draw()
            elif not self._drawn:
                self._write([self._header, *(step_line(p, s) for p, s in sorted(fresh.items()))])
                self._drawn = 1
            return
        self._steps[notice.path] = notice
        if self._redraw:
            self._draw()
        else:
            self._write([step_line(notice.path, notice)])

    def _draw(self) -> None:
        lines = [self._header, *(step_line(p, s) for p, s in sorted(self._steps.items()))]
        up = f"\x1b[{self._drawn}F" if self._drawn else ""
        self._stream.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
        self._stream.flush()
        self._drawn = len(lines)

    def _write(self, lines: list[str]) -> None:
        self._stream.write("".join(f"{line}\n" for line in lines))
        self._stream.flush()
