"""Topology files (YAML and TOML): the schema, and errors naming file, path and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from bus.errors import TopologyError
from bus.workflow.loader import (
    decode_topology,
    encode_topology,
    load_directory,
    load_topology,
    parse_topology,
)
from bus.workflow.topology import Conditional, Parallel, Sequential, Step, StepRetry, Topology

DATA = Path(__file__).parent / "data" / "topologies"


def test_design_example_in_yaml() -> None:
    topology = load_topology(DATA / "review.yaml")
    assert topology.name == "review"
    assert topology.trigger == ("code.pushed",)
    assert topology.root == Sequential(
        (
            Step("planner"),
            Conditional(
                when="complexity > 5",
                then=Parallel(
                    (
                        Step("linter"),
                        Step(
                            "tester",
                            retry=StepRetry(attempts=3, base=0.5, max=10.0),
                            timeout=120.0,
                        ),
                    ),
                    merge="by_name",
                ),
                otherwise=Sequential((Step("tester", fallback="quick-tester"),)),
            ),
        )
    )
    assert len(topology.version) == 16


def test_toml_reads_the_same_schema() -> None:
    yaml_form = load_topology(DATA / "review.yaml")
    toml_form = load_topology(DATA / "review.toml")
    assert toml_form.name == "review-toml"
    assert toml_form.root == yaml_form.root
    assert toml_form.trigger == yaml_form.trigger


def test_every_option() -> None:
    topology = load_topology(DATA / "triage.yml")
    assert topology.trigger == ("issue.*", "ticket.>")
    assert topology.triggered_by("issue.opened")
    assert topology.triggered_by("ticket.a.b")
    assert not topology.triggered_by("issue.opened.again")
    assert not topology.triggered_by("ticket")
    first, fan, race = topology.root.steps  # type: ignore[union-attr]
    assert first == Step(
        "classifier", name="classify", input="issue", timeout=5.0, retry=StepRetry(attempts=2)
    )
    assert isinstance(fan, Parallel)
    assert (fan.merge, fan.quorum) == ("list", 2)
    assert isinstance(fan.branches[1], Sequential)
    assert isinstance(race, Parallel)
    assert race.merge == "first"


def test_version_is_a_content_hash() -> None:
    a = parse_topology({"name": "x", "steps": [{"agent": "a"}]}, "x.yaml")
    b = parse_topology({"name": "x", "steps": [{"agent": "a"}]}, "other.yaml")
    c = parse_topology({"name": "x", "steps": [{"agent": "b"}]}, "x.yaml")
    assert a.version == b.version != c.version
    assert a == Topology.build("x", [Step("a")])


def test_name_defaults_to_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "nightly.yaml"
    path.write_text("steps: [{agent: a}]\n")
    assert load_topology(path).name == "nightly"


def test_load_directory(tmp_path: Path) -> None:
    names = [t.name for t in load_directory(DATA)]
    assert names == ["review-toml", "review", "triage"]  # sorted by file name
    (tmp_path / "a.yaml").write_text("name: same\nsteps: [{agent: a}]\n")
    (tmp_path / "b.toml").write_text('name = "same"\n[[steps]]\nagent = "b"\n')
    (tmp_path / "notes.txt").write_text("ignored")
    with pytest.raises(TopologyError, match=r"b\.toml: topology 'same' is already defined in"):
        load_directory(tmp_path)
    with pytest.raises(TopologyError, match="not a directory"):
        load_directory(tmp_path / "a.yaml")


def test_encode_decode_round_trip() -> None:
    for topology in load_directory(DATA):
        assert decode_topology(encode_topology(topology)) == topology
    with pytest.raises(TopologyError, match="stored topology is invalid"):
        decode_topology(b'{"name": "x"}')
    with pytest.raises(TopologyError, match="merge"):
        decode_topology(
            b'{"name":"x","root":{"kind":"parallel","branches":[{"kind":"step","agent":"a"}],'
            b'"merge":"nowhere:fn"}}'
        )


YAML_MISTAKES = [
    ("steps: [{agent: a, retries: 3}]", "steps[0]", "unknown key 'retries'"),
    (
        "steps:\n - agent: p\n - when: x > 1\n   then:\n     parallel: [{agnt: linter}]",
        "steps[1].then.parallel[0]",
        "expected a step ('agent'), 'parallel' or 'when'; got keys 'agnt'",
    ),
    ("steps: [{agent: }]", "steps[0].agent", "expected a string, got nothing"),
    ("steps: [{agent: 3}]", "steps[0].agent", "expected a string, got a int"),
    ("steps: [{agent: 'two words'}]", "steps[0].agent", "is not an agent name"),
    ("steps: [{agent: a, fallback: b.c}]", "steps[0].fallback", "is not an agent name"),
    ("steps: [{parallel: [{agent: a}], merge: zip}]", "steps[0].merge", "merge 'zip' is not"),
    (
        "steps: [{parallel: [{agent: a}], merge: 'no_such_module:f'}]",
        "steps[0].merge",
        "cannot be imported",
    ),
    (
        "steps: [{parallel: [{agent: a}, {agent: b}], quorum: 3}]",
        "steps[0].quorum",
        "3 is not between 1 and the 2 branches",
    ),
    ("steps: [{parallel: [{agent: a}], quorum: 0}]", "steps[0].quorum", "not between 1"),
    ("steps: [{parallel: [{agent: a}], quorum: two}]", "steps[0].quorum", "expected an integer"),
    (
        "steps: [{parallel: [{agent: t}, {agent: t}]}]",
        "steps[0].parallel",
        "two branches are named 't' in a by_name merge",
    ),
    (
        "steps: [{parallel: [{agent: t}, {agent: t, name: t2}]}]",
        None,
        None,
    ),
    ("steps: [{parallel: []}]", "steps[0].parallel", "no branches"),
    (
        "steps: [{when: 'a >> 1', then: {agent: a}}]",
        "steps[0].when",
        "bad expression 'a >> 1': expected a value, found '>' at column 4",
    ),
    ("steps: [{when: 'a > 1'}]", "steps[0]", "missing key 'then'"),
    ("steps: [{when: 'a', then: {agent: a}, else: []}]", "steps[0]", "unknown key 'else'"),
    ("steps: [{when: 'a', then: []}]", "steps[0].then", "an empty list of steps"),
    ("steps: [{agent: a, timeout: -1}]", "steps[0].timeout", "must be more than 0"),
    ("steps: [{agent: a, timeout: soon}]", "steps[0].timeout", "expected a number"),
    ("steps: [{agent: a, retry: {tries: 3}}]", "steps[0].retry", "unknown key 'tries'"),
    ("steps: [{agent: a, retry: 0}]", "steps[0].retry.attempts", "must be at least 1"),
    ("steps: [{agent: a, retry: true}]", "steps[0].retry", "expected a mapping"),
    ("steps: [{agent: a, input: 'a b'}]", "steps[0].input", "is not a dotted path"),
    ("steps: [[{agent: a}, 7]]", "steps[0][1]", "got a int"),
    ("steps: []", "steps", "an empty list of steps"),
    ("steps: {agent: a}", "steps", "must be a list of steps"),
    ("name: x", "(top level)", "missing key 'steps'"),
    ("steps: [{agent: a}]\nowner: me", "(top level)", "unknown key 'owner'"),
    ("- agent: a", "(top level)", "expected a mapping, got a list"),
    ("name: ''\nsteps: [{agent: a}]", "name", "non-empty string"),
    ("trigger: 'a..b'\nsteps: [{agent: a}]", "trigger", "empty token"),
    ("trigger: ['a.>.b']\nsteps: [{agent: a}]", "trigger[0]", "'>' the last one"),
    ("trigger: [3]\nsteps: [{agent: a}]", "trigger", "an event type or a list"),
]


@pytest.mark.parametrize(("text", "where", "reason"), YAML_MISTAKES)
def test_yaml_mistakes_name_file_path_and_reason(
    tmp_path: Path, text: str, where: str | None, reason: str | None
) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(text + "\n")
    if where is None:
        load_topology(path)  # the control: this one is fine
        return
    with pytest.raises(TopologyError) as caught:
        load_topology(path)
    assert str(caught.value).startswith(f"{path}: {where}: ")
    assert reason is not None
    assert reason in str(caught.value)


TOML_MISTAKES = [
    ('[[steps]]\nagent = "a"\nretries = 3', "steps[0]", "unknown key 'retries'"),
    (
        '[[steps]]\nagent = "p"\n[[steps]]\nwhen = "x > 1"\n[steps.then]\n'
        'parallel = [{ agent = "a" }, { agent = "b" }]\nquorum = 5',
        "steps[1].then.quorum",
        "5 is not between 1 and the 2 branches",
    ),
    (
        '[[steps]]\nwhen = "x >"\nthen = { agent = "a" }',
        "steps[0].when",
        "expected a value, found the end at column 4",
    ),
    (
        '[[steps]]\nparallel = [{ agent = "a" }, { fallback = "b" }]',
        "steps[0].parallel[1]",
        "expected a step ('agent')",
    ),
]


@pytest.mark.parametrize(("text", "where", "reason"), TOML_MISTAKES)
def test_toml_mistakes_name_file_path_and_reason(
    tmp_path: Path, text: str, where: str, reason: str
) -> None:
    path = tmp_path / "flow.toml"
    path.write_text(text + "\n")
    with pytest.raises(TopologyError) as caught:
        load_topology(path)
    assert str(caught.value).startswith(f"{path}: {where}: ")
    assert reason in str(caught.value)


def test_syntax_errors_name_the_file_and_line(tmp_path: Path) -> None:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("steps:\n  - agent: a\n   - agent: b\n")
    with pytest.raises(TopologyError, match=r"bad\.yaml: invalid YAML: line 3, column 4"):
        load_topology(bad_yaml)
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("[[steps]\n")
    with pytest.raises(TopologyError, match=r"bad\.toml: invalid TOML: .*line 1"):
        load_topology(bad_toml)


def test_unreadable_and_unknown_files(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match=r"missing\.yaml: cannot read"):
        load_topology(tmp_path / "missing.yaml")
    with pytest.raises(TopologyError, match=r"flow\.json: not a topology file"):
        load_topology(tmp_path / "flow.json")
