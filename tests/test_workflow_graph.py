"""Mermaid flowcharts of topologies."""

from __future__ import annotations

from pathlib import Path

from bus.workflow import Step, StepRetry, Topology, conditional, load_topology, parallel, to_mermaid

DATA = Path(__file__).parent / "data" / "topologies"


def test_design_example() -> None:
    text = to_mermaid(load_topology(DATA / "review.yaml"))
    assert text.splitlines() == [
        "flowchart TD",
        '  start(["review<br/>on code.pushed"])',
        '  n_0["planner"]',
        '  n_1_if{"complexity #gt; 5"}',
        '  n_1_then_fork{{"parallel"}}',
        '  n_1_then_join{{"join: by_name"}}',
        '  n_1_then_0["linter"]',
        "  n_1_then_fork --> n_1_then_0",
        "  n_1_then_0 --> n_1_then_join",
        '  n_1_then_1["tester<br/>retry: 3<br/>timeout: 120s"]',
        "  n_1_then_fork --> n_1_then_1",
        "  n_1_then_1 --> n_1_then_join",
        "  n_1_if -->|then| n_1_then_fork",
        '  n_1_otherwise_0["tester<br/>fallback: quick-tester"]',
        "  n_1_if -->|else| n_1_otherwise_0",
        "  n_0 --> n_1_if",
        '  done(["output"])',
        "  start --> n_0",
        "  n_1_then_join --> done",
        "  n_1_otherwise_0 --> done",
    ]


def test_missing_otherwise_is_an_else_edge_to_what_follows() -> None:
    topology = Topology.build(
        "t",
        [
            conditional("lang == 'py' and \"x\" in tags", Step("a", name="lint", input="src")),
            parallel(Step("b"), Step("c", retry=StepRetry(attempts=1)), merge="list", quorum=1),
        ],
    )
    text = to_mermaid(topology)
    assert "  n_0_if{\"lang == 'py' and #quot;x#quot; in tags\"}" in text
    assert '  n_0_then["lint<br/>agent: a<br/>input: src"]' in text
    assert "  n_0_then --> n_1_fork" in text
    assert "  n_0_if -->|else| n_1_fork" in text
    assert '  n_1_join{{"join: list, quorum 1"}}' in text
    assert '  n_1_1["c"]' in text
    assert "  n_1_join --> done" in text
