"""``bus demo``: the whole mission on one machine in well under a minute.

A temporary store, ``bus up`` (server, coordinator, every agent as its own process), then the
three workflow patterns on real code with a live view of their steps, each run's result,
``bus stats``, and a clean stop.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import msgspec

from bus.cli.progress import ProgressView
from bus.coordinator.client import workflow_client
from bus.dev.up import DevBus
from bus.settings import Settings
from bus.workflow.records import RunRecord

RUN_TIMEOUT = 180.0


class DemoRun(msgspec.Struct, frozen=True):
    """One run the demo makes: which topology, on what, and what it shows."""

    topology: str
    path: Path
    shows: str


def demo_runs(project: Path, path: Path | None) -> list[DemoRun]:
    """The sample project (or ``path``) through each topology; the conditional twice on the
    sample, so both of its branches show."""
    # Absolute paths: each agent resolves a relative one against its own working directory.
    project = project.resolve()
    topologies = project / "topologies"
    sample = project / "examples" / "sample_project"
    target = path or sample
    runs = [
        DemoRun(
            str(topologies / "sequential.yaml"), target, "sequential: planner → linter → tester"
        ),
        DemoRun(
            str(topologies / "parallel.yaml"), target, "parallel: linter, tester and docs at once"
        ),
        DemoRun(str(topologies / "conditional.yaml"), target, "conditional on the whole project"),
    ]
    if path is None:
        runs.append(
            DemoRun(
                str(topologies / "conditional.yaml"),
                sample / "simple",
                "conditional on simple code",
            )
        )
    return runs


async def run_demo(
    project: Path,
    settings: Settings,
    out: TextIO,
    *,
    path: Path | None = None,
    render_stats: Callable[[Settings], Any] | None = None,
) -> int:
    """Run the demo; returns the exit code (0 when every run completed)."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bus-demo-") as tmp:
        dev = DevBus(project, settings, store=Path(tmp) / "store", log_dir=Path(tmp) / "logs")
        try:
            out.write("starting nats-server, a coordinator and every agent as its own process...\n")
            settings = dev.start()
            up = await dev.wait_ready()
            out.write(f"up in {time.monotonic() - started:.1f}s: {', '.join(up)}\n\n")
            records = await _run_all(settings, demo_runs(project, path), out)
            if render_stats is not None:
                out.write("\n" + await render_stats(settings) + "\n")
        finally:
            dev.stop()
    failed = [r for r in records if r.state != "completed"]
    out.write(
        f"\n{len(records) - len(failed)}/{len(records)} runs completed in "
        f"{time.monotonic() - started:.1f}s; everything stopped.\n"
    )
    return 1 if failed else 0


async def _run_all(settings: Settings, runs: list[DemoRun], out: TextIO) -> list[RunRecord]:
    records = []
    async with workflow_client(settings) as client:
        for run in runs:
            out.write(f"== {run.shows} ({Path(run.path).name})\n")
            run_id = await client.start_run(run.topology, {"path": str(run.path)})
            view = ProgressView(out, redraw=out.isatty())
            record = await client.wait_run(run_id, on_update=view.update, timeout=RUN_TIMEOUT)
            view.update(record)
            out.write(summarize(record) + "\n\n")
            records.append(record)
    return records


def summarize(record: RunRecord) -> str:
    """A few lines on what a run found."""
    took = (record.finished_at or time.time()) - record.created_at
    lines = [f"-> {record.state} in {took:.2f}s"]
    if record.error is not None:
        lines.append(f"   error: {record.error.kind}: {record.error.message}")
    skipped = sorted(p for p, s in record.steps.items() if s.state == "skipped")
    if skipped:
        lines.append(f"   skipped: {', '.join(skipped)}")
    lines.extend(f"   {line}" for line in _findings(record.output))
    return "\n".join(lines)


def _findings(output: Any) -> list[str]:
    """One line per part of the output: a merged report's branches, or the fields of one."""
    if not isinstance(output, dict):
        return [_scalar(output)]
    if output and all(isinstance(v, dict) for v in output.values()):
        return [f"{key}: {_fields(value)}" for key, value in output.items()]
    return [_fields(output)]


def _fields(value: dict[str, Any]) -> str:
    shown = [
        f"{k}={_scalar(v)}"
        for k, v in value.items()
        if k != "path" and not isinstance(v, dict | list) and v not in ("", None)
    ]
    return ", ".join(shown[:7])


def _scalar(value: Any) -> str:
    text = str(value).strip().splitlines()[0] if str(value).strip() else ""
    return text if len(text) <= 60 else text[:57] + "..."
