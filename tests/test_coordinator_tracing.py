"""A run seen as one trace: the coordinator's run span and every handler span share its id."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.sdk")

SCRIPT = """
    import json, sys
    import anyio
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from bus.coordinator.client import workflow_client
    from bus.coordinator.service import Coordinator
    from bus.testing import nats_server, running_agent, settings_for
    from bus.workflow import Step, Topology
    from workflow_agents import inc

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

    async def main():
        with nats_server() as server:
            settings = settings_for(server)
            topology = Topology.build("twice", [Step("inc"), Step("inc")])
            async with Coordinator(settings).running(), running_agent(inc, settings):
                async with workflow_client(settings) as client:
                    run_id = await client.start_run(topology, {"n": 0})
                    record = await client.wait_run(run_id, timeout=30)
        return record

    record = anyio.run(main)
    spans = [{"name": s.name, "trace": format(s.context.trace_id, "032x")}
             for s in exporter.get_finished_spans()]
    print(json.dumps({"trace": record.trace, "state": record.state, "spans": spans}))
"""


def test_run_and_handler_spans_share_the_runs_trace_id() -> None:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=Path(__file__).parent,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["state"] == "completed"
    trace_id = out["trace"].split("-")[1]
    names = sorted(s["name"] for s in out["spans"])
    assert names == ["inc handle", "inc handle", "run twice"]
    assert {s["trace"] for s in out["spans"]} == {trace_id}
