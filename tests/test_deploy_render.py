"""Rendering: the permission sets as data, the files and their modes, credential reuse, agent
discovery, and that no secret reaches the command's output."""

from __future__ import annotations

import json
import stat
import textwrap
import tomllib
from pathlib import Path

import pytest

from bus.cli.main import main
from bus.deploy import permissions as perms
from bus.deploy.credentials import Secret, load_or_create
from bus.deploy.discover import agents_in_dir, agents_in_topologies
from bus.deploy.render import render_bundle
from bus.errors import ConfigError
from bus.subjects import Subjects


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_an_agent_is_allowed_only_subjects_named_after_itself() -> None:
    p = perms.agent_permissions("alpha", event_consumers=["alpha-on_push"])
    for subject in (*p.publish, *p.subscribe):
        assert "beta" not in subject
        assert not subject.startswith(("bus.task", "bus.event", "bus.run", "$JS.API.STREAM.DEL"))
        assert "CREATE" not in subject or "alpha" in subject
    assert "bus.reply.alpha.>" in p.publish
    assert "bus.dlq.alpha" in p.publish
    assert "bus.agent.alpha alpha" in p.subscribe
    assert "_INBOX.alpha.>" in p.subscribe
    assert "$JS.ACK.BUS_TASKS.alpha.>" in p.publish
    assert "$JS.ACK.*.*.BUS_TASKS.alpha.>" in p.publish
    assert "$JS.API.CONSUMER.DURABLE.CREATE.BUS_TASKS.alpha" not in p.publish
    assert p.allow_responses


def test_the_prefix_renames_every_subject() -> None:
    p = perms.agent_permissions("alpha", Subjects("acme"))
    assert "acme.reply.alpha.>" in p.publish
    assert "$JS.API.CONSUMER.MSG.NEXT.ACME_TASKS.alpha" in p.publish
    assert not any(s.startswith("bus.") for s in (*p.publish, *p.subscribe))


def test_only_the_coordinator_dispatches_and_a_client_only_publishes_events() -> None:
    coordinator = perms.coordinator_permissions()
    client = perms.client_permissions()
    assert "bus.task.>" in coordinator.publish
    assert not any(s.startswith("bus.reply") for s in coordinator.publish)
    assert not any("DELETE" in s or "PURGE" in s for s in (*coordinator.publish, *client.publish))
    assert [s for s in client.publish if s.startswith("bus.")] == [
        "bus.event.>",
        "bus.control.start",
        "bus.control.cancel",
    ]
    assert not any(s.startswith("$KV.") for s in client.publish)  # reads only
    assert client.subscribe == ("bus.run.>", "_INBOX.client.>")
    assert not client.allow_responses


def test_bundle_files_modes_and_reuse(tmp_path: Path) -> None:
    first = render_bundle(tmp_path, {"alpha": [], "beta": []}, replicas=3)
    auth = Path(first.auth_config)
    seed = tmp_path / "credentials" / "alpha" / "alpha.nk"
    settings = tmp_path / "credentials" / "alpha" / "alpha.toml"
    assert _mode(auth) == _mode(seed) == _mode(settings) == 0o600
    values = tomllib.loads(settings.read_text())
    assert values["nkey_seed"] == str(seed.resolve())
    assert (values["inbox_prefix"], values["replicas"], values["prefix"]) == (
        "_INBOX.alpha",
        3,
        "bus",
    )
    assert set(first.services) == {"alpha", "beta", "coordinator", "client", "admin"}
    text = auth.read_text()
    public = load_or_create(seed.parent, "alpha", "nkey").identity
    assert public.startswith("U")
    assert f'nkey: "{public}"' in text
    assert seed.read_text().strip() not in text

    seed.chmod(0o644)
    render_bundle(tmp_path, {"alpha": [], "beta": [], "gamma": []}, mount_path="/etc/bus")
    assert load_or_create(seed.parent, "alpha", "nkey").identity == public
    assert _mode(seed) == 0o600
    assert tomllib.loads(settings.read_text())["nkey_seed"] == "/etc/bus/alpha.nk"
    assert "# gamma" in auth.read_text()


def test_password_auth(tmp_path: Path) -> None:
    bundle = render_bundle(tmp_path, {"alpha": []}, auth="password")
    values = tomllib.loads((tmp_path / "credentials" / "alpha" / "alpha.toml").read_text())
    assert values["user"] == "alpha"
    assert len(values["password"]) >= 32
    assert f'password: "{values["password"]}"' in Path(bundle.auth_config).read_text()
    assert not (tmp_path / "credentials" / "alpha" / "alpha.nk").exists()
    again = render_bundle(tmp_path, {"alpha": []}, auth="password")
    assert Path(again.auth_config).read_text().count(values["password"]) == 1


def test_secrets_never_show_in_reprs() -> None:
    secret = Secret("SUsecret")
    assert "SUsecret" not in repr(secret)
    assert "SUsecret" not in f"{secret}"
    credential = load_or_create(Path("/nonexistent"), "alpha", "nkey")
    assert credential.secret.reveal() not in repr(credential)


def test_reserved_and_invalid_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="reserved"):
        render_bundle(tmp_path, {"coordinator": []})
    with pytest.raises(ConfigError):
        render_bundle(tmp_path, {"a.b": []})


def _write_agents(root: Path) -> Path:
    agents = root / "myagents"
    agents.mkdir()
    (agents / "alpha.py").write_text(
        textwrap.dedent(
            """
            from bus import Agent
            agent = Agent("alpha")

            @agent.handler
            async def run(x: dict) -> dict:
                return x

            @agent.on_event("code.*")
            async def on_push(x: dict) -> None:
                return None
            """
        )
    )
    (agents / "_helpers.py").write_text("raise RuntimeError('never imported')\n")
    return agents


def test_discovery_imports_agents_and_reads_topologies(tmp_path: Path) -> None:
    assert agents_in_dir(_write_agents(tmp_path)) == {"alpha": ["alpha-on_push"]}
    topologies = tmp_path / "topologies"
    topologies.mkdir()
    (topologies / "review.yaml").write_text(
        "name: review\nsteps:\n  - agent: alpha\n  - parallel:\n"
        "      - {agent: beta, fallback: gamma}\n"
    )
    (topologies / "other.toml").write_text('name = "x"\n[[steps]]\nagent = "delta"\n')
    assert agents_in_topologies(topologies) == {"alpha", "beta", "gamma", "delta"}


def test_cli_renders_without_printing_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    agents = _write_agents(tmp_path)
    out = tmp_path / "out"
    argv = ["deploy", "nats-config", "--agents", str(agents), "--agent", "beta"]
    code = main([*argv, "--out", str(out), "--auth", "password", "--json"])
    printed = capsys.readouterr()
    assert code == 0
    summary = json.loads(printed.out)
    assert set(summary["services"]) == {"alpha", "beta", "coordinator", "client", "admin"}
    for service in summary["services"]:
        password = tomllib.loads((out / "credentials" / service / f"{service}.toml").read_text())
        assert password["password"] not in printed.out + printed.err
    assert "alpha-on_push" in (out / "auth.conf").read_text()


def test_cli_needs_some_agent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy", "nats-config", "--out", str(tmp_path)]) != 0
    assert "no agents" in capsys.readouterr().err
