"""The core CLI as a user runs it: one clear line and a non-zero exit for every mistake."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bus.server import NatsServer, free_port
from bus.settings import Settings
from bus.testing import spawn_bus

TESTS = Path(__file__).parent


def bus(
    *args: str, env: dict[str, str] | None = None, cwd: Path = TESTS
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bus", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )


def one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_bad_json_is_one_line() -> None:
    one_line_error(
        bus("request", "echo", "{not json", "--nats", "nats://127.0.0.1:1"), "invalid JSON"
    )


def test_no_server_is_one_line() -> None:
    port = free_port()
    result = bus("request", "echo", "{}", "--nats", f"nats://127.0.0.1:{port}")
    one_line_error(result, "cannot connect to NATS", str(port))


def test_unknown_agent_is_one_line(server: NatsServer) -> None:
    one_line_error(bus("request", "ghost", "{}", "--nats", server.url), "no agent named 'ghost'")


def test_bad_agent_reference_is_one_line() -> None:
    one_line_error(bus("agent", "run", "nowhere:agent"), "cannot import 'nowhere'")
    one_line_error(bus("agent", "run", "agents_for_tests:Greeting"), "not a bus.Agent")


def test_bad_event_type_is_one_line(server: NatsServer) -> None:
    one_line_error(bus("publish", "code..pushed", "{}", "--nats", server.url), "event type")


def test_help_teaches_with_examples() -> None:
    result = bus("agent", "run", "--help")
    assert result.returncode == 0
    assert "--replicas" in result.stdout
    assert "bus agent run agents.planner:agent --replicas 3" in result.stdout


@pytest.mark.slow
def test_agent_replicas_request_publish_and_discovery(
    server: NatsServer, settings: Settings
) -> None:
    agents = spawn_bus(
        ["agent", "run", "agents_for_tests:echo", "--replicas", "2"], settings, cwd=str(TESTS)
    )
    try:
        deadline_ok = False
        for _ in range(100):
            listing = bus("agents", "--json", "--nats", server.url)
            found = [a for a in json.loads(listing.stdout or "[]") if a["name"] == "echo"]
            if found and found[0]["instances"] == 2:
                deadline_ok = True
                break
        assert deadline_ok, "two echo replicas never showed up in `bus agents`"
        result = bus("request", "echo", '{"name": "cli"}', "--nats", server.url)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == {"text": "hello cli"}
        full = bus("request", "echo", '{"name": 3}', "--json", "--nats", server.url)
        assert full.returncode == 1
        assert json.loads(full.stdout)["error"]["kind"] == "invalid_input"
        published = bus(
            "publish", "code.pushed", '{"path": "."}', "--id", "e1", "--json", "--nats", server.url
        )
        assert json.loads(published.stdout) == {
            "id": "e1",
            "type": "code.pushed",
            "duplicate": False,
        }
    finally:
        agents.terminate()
        assert agents.wait(30) == 0


def test_bus_server_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    import signal
    import socket

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bus", "server", "--port", str(port), "--store", str(tmp_path)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        ready = proc.stderr.readline()
        assert f"nats-server ready at nats://127.0.0.1:{port}" in ready
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        if proc.stderr is not None:
            proc.stderr.close()
    with socket.socket() as sock:  # the port is free again: no server left behind
        sock.bind(("127.0.0.1", port))


def test_bus_server_refuses_a_taken_port(server: NatsServer) -> None:
    one_line_error(bus("server", "--port", str(server.port)), "in use")


def test_bus_server_includes_an_extra_config(tmp_path: Path) -> None:
    from bus.server import NatsServer, ServerOptions

    extra = tmp_path / "extra" / "limits.conf"
    extra.parent.mkdir()
    extra.write_text("max_connections: 77\n")
    with NatsServer(ServerOptions(store_dir=str(tmp_path / "store"), include=str(extra))) as srv:
        import json
        import urllib.request

        url = f"http://127.0.0.1:{srv.monitor_port}/varz"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert json.load(response)["max_connections"] == 77


def test_agent_run_without_a_server_is_one_line() -> None:
    port = free_port()
    result = bus("agent", "run", "agents_for_tests:echo", "--nats", f"nats://127.0.0.1:{port}")
    one_line_error(result, "cannot connect to NATS", str(port))
