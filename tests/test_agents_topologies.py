"""The three topologies of ``topologies/`` run with the real reference agents (in memory).

``bus.workflow.simulate`` plays the coordinator, the agents' handlers do their real work on the
sample project, so this shows the wiring: what each step receives, which branch the
conditional takes and that the reviewer's fallback answers when no model is configured.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from agents import docs, linter, planner, reviewer, rule_reviewer, tester
from bus import Agent
from bus.workflow.loader import load_directory
from bus.workflow.records import RunRecord
from bus.workflow.simulate import simulate
from bus.workflow.topology import Topology

ROOT = Path(__file__).parents[1]
SAMPLE = ROOT / "examples" / "sample_project"
OFFLINE_AGENTS = [
    planner.agent,
    linter.agent,
    tester.agent,
    rule_reviewer.agent,
    reviewer.make_agent(reviewer.LLMConfig()),  # no model: fails for good, fallback answers
    docs.make_agent(docs.Context7Config(url="")),  # no network: pydoc
]


def as_function(agent: Agent) -> Callable[[Any], Any]:
    """The agent's default handler as a plain function of plain data, as the wire sees it."""
    spec = agent.default_handler
    assert spec is not None

    def call(data: Any) -> Any:
        value = msgspec.convert(data, spec.input_type)
        return msgspec.json.decode(msgspec.json.encode(anyio.run(spec.func, value)))

    return call


@pytest.fixture(scope="module")
def topologies() -> dict[str, Topology]:
    return {t.name: t for t in load_directory(ROOT / "topologies")}


def run(topology: Topology, path: Path) -> RunRecord:
    functions = {agent.name: as_function(agent) for agent in OFFLINE_AGENTS}
    record = simulate(topology, {"path": str(path)}, functions)
    assert record.state == "completed", record.error
    return record


def test_the_three_topologies_load(topologies: dict[str, Topology]) -> None:
    assert set(topologies) == {"sequential", "parallel", "conditional"}
    assert topologies["sequential"].trigger == ("code.pushed",)


def test_sequential_chains_planner_linter_tester(topologies: dict[str, Topology]) -> None:
    record = run(topologies["sequential"], SAMPLE)
    assert [(s.agent, s.state) for s in record.steps.values()] == [
        ("planner", "succeeded"),
        ("linter", "succeeded"),
        ("tester", "succeeded"),
    ]
    assert record.steps["1"].output["total"] == 3  # the linter found `path` in the spec
    assert (record.output["failed"], record.output["passed"]) == (1, 9)


def test_parallel_merges_linter_tester_and_docs_by_name(topologies: dict[str, Topology]) -> None:
    output = run(topologies["parallel"], SAMPLE).output
    assert set(output) == {"linter", "tester", "docs"}
    assert output["linter"]["by_rule"] == {"F841": 1, "F401": 1, "E711": 1}
    assert output["tester"]["failures"] == [
        "tests/test_pricing.py::test_bulk_discount_starts_at_ten_units"
    ]
    assert (output["docs"]["library"], output["docs"]["source"]) == ("asyncio", "pydoc")


def test_conditional_deep_review_on_complex_code(topologies: dict[str, Topology]) -> None:
    record = run(topologies["conditional"], SAMPLE)
    assert set(record.output) == {"linter", "tester", "review"}
    review = next(s for s in record.steps.values() if s.fallback)
    assert (review.agent, review.state) == ("rule-reviewer", "succeeded")
    assert record.output["review"]["source"] == "rules"
    assert record.output["review"]["score"] == 81
    assert all(s.state == "skipped" for p, s in record.steps.items() if ".otherwise" in p)


def test_conditional_tests_only_on_simple_code(topologies: dict[str, Topology]) -> None:
    record = run(topologies["conditional"], SAMPLE / "simple")
    ran = sorted(s.agent for s in record.steps.values() if s.state == "succeeded")
    assert ran == ["planner", "tester"]
    assert (record.output["passed"], record.output["failed"]) == (2, 0)
