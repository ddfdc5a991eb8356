"""The workflow CLI as a user runs it, against a `bus coordinator` and an agent process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from bus.coordinator import UnknownRunError, workflow_client
from bus.server import NatsServer, free_port
from bus.settings import Settings
from bus.testing import nats_server, settings_for, spawn_bus
from bus.transport.connection import connect

TESTS = Path(__file__).parent
SEQ = "name: seq\nsteps: [{agent: inc}, {agent: inc}]\n"
DOOMED = "name: doomed\nsteps: [{agent: nobody, timeout: 0.5}]\n"
RECORD_KEYS = {
    "run_id", "topology", "state", "input", "output", "error", "steps", "created_at",
    "finished_at",
}  # fmt: skip


def bus(*args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    nats = ["--nats", url] if url else []
    return subprocess.run(
        [sys.executable, "-m", "bus", *args, *nats],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=TESTS,
        env={"PATH": "/usr/bin:/bin", "BUS_LOG_LEVEL": "warning"},
    )


def one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0]


async def _ready(settings: Settings) -> None:
    nc = await connect(settings)
    try:
        with anyio.fail_after(30):
            while True:
                try:
                    await nc.jetstream().consumer_info("BUS_TASKS", "inc")
                    break
                except Exception:
                    await anyio.sleep(0.05)
    finally:
        await nc.close()
    await _coordinator_answers(settings, timeout=15)


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with nats_server() as server:
        settings = settings_for(server)
        env = {"BUS_LOG_LEVEL": "warning"}
        procs = [
            spawn_bus(["coordinator"], settings, env=env),
            spawn_bus(["agent", "run", "workflow_agents:inc"], settings, env=env, cwd=str(TESTS)),
        ]
        try:
            anyio.run(_ready, settings)
            yield server.url
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=20)


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "seq.yaml").write_text(SEQ)
    (tmp_path / "doomed.yaml").write_text(DOOMED)
    (tmp_path / "bad.yaml").write_text("name: bad\nsteps: [{agnt: inc}]\n")
    (tmp_path / "input.json").write_text('{"n": 40}')
    return tmp_path


@pytest.mark.parametrize(
    "command",
    [
        ["coordinator"], ["run"], ["runs"], ["status"], ["watch"], ["cancel"],
        ["dlq", "list"], ["dlq", "replay"], ["graph"],
    ],
)  # fmt: skip
def test_every_command_has_help_with_examples(command: list[str]) -> None:
    result = bus(*command, "--help")
    assert result.returncode == 0
    assert "example" in result.stdout
    assert "--nats" in result.stdout


def test_graph_of_a_file_needs_no_server(files: Path) -> None:
    result = bus("graph", str(files / "seq.yaml"), url=f"nats://127.0.0.1:{free_port()}")
    assert result.returncode == 0
    assert result.stdout.startswith("flowchart TD")
    assert result.stdout.count('["inc"]') == 2


def test_user_mistakes_are_one_line(files: Path) -> None:
    dead = f"nats://127.0.0.1:{free_port()}"
    one_line_error(bus("graph", str(files / "bad.yaml")), "bad.yaml", "steps[0]", "agnt")
    one_line_error(bus("coordinator", "--topologies", str(files / "nowhere")), "not a directory")
    one_line_error(bus("run", "seq", "--input", "{oops", url=dead), "invalid JSON")
    one_line_error(bus("runs", url=dead), "cannot connect to NATS")
    one_line_error(bus("coordinator", url=dead), "cannot connect to NATS")


def test_errors_against_a_live_bus_are_one_line(url: str, files: Path) -> None:
    one_line_error(bus("run", "ghost", url=url), "no topology 'ghost'")
    one_line_error(bus("status", "nope", url=url), "no run 'nope'")
    one_line_error(bus("cancel", "nope", url=url), "no run")
    one_line_error(bus("dlq", "replay", "999", url=url), "no dead letter 999")


def test_run_wait_json_prints_the_record_and_shows_progress(url: str, files: Path) -> None:
    result = bus(
        "run", str(files / "seq.yaml"), "--input", f"@{files / 'input.json'}", "--wait", "--json",
        url=url,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert set(record) == RECORD_KEYS
    assert (record["state"], record["output"], record["input"]) == (
        "completed",
        {"n": 42},
        {"n": 40},
    )
    assert record["steps"] == {
        "0": {"agent": "inc", "state": "succeeded", "attempts": 1},
        "1": {"agent": "inc", "state": "succeeded", "attempts": 1},
    }
    assert "succeeded" in result.stderr  # the live view (stderr is not a terminal here)

    plain = bus("run", "seq", "--input", '{"n": 1}', "--wait", url=url)
    assert (plain.returncode, json.loads(plain.stdout)) == (0, {"n": 3})


def test_a_failed_run_exits_1_with_the_reason(url: str, files: Path) -> None:
    result = bus("run", str(files / "doomed.yaml"), "--wait", url=url)
    assert result.returncode == 1
    assert "failed: timeout" in result.stderr.strip().splitlines()[-1]


def test_run_runs_status_and_watch(url: str, files: Path) -> None:
    started = bus("run", str(files / "seq.yaml"), "--input", '{"n": 7}', "--json", url=url)
    assert started.returncode == 0, started.stderr
    run_id = json.loads(started.stdout)["run_id"]
    assert set(json.loads(started.stdout)) == {"run_id"}

    watched = bus("watch", run_id, url=url)  # returns once the run finished
    assert watched.returncode == 0, watched.stderr
    assert "run completed" in watched.stdout.splitlines()[-1]

    status = json.loads(bus("status", run_id, "--json", url=url).stdout)
    assert (status["run_id"], status["state"], status["output"]) == (run_id, "completed", {"n": 9})
    human = bus("status", run_id, url=url).stdout
    assert run_id in human
    assert "succeeded" in human

    runs = json.loads(bus("runs", "--state", "completed", "--json", url=url).stdout)
    assert run_id in [r["run_id"] for r in runs]
    assert all(set(r) == RECORD_KEYS and r["state"] == "completed" for r in runs)
    assert json.loads(bus("runs", "--state", "cancelled", "--json", url=url).stdout) == []


async def test_dlq_list_and_replay(url: str) -> None:
    nc = await connect(settings_for_url(url))
    try:
        await nc.jetstream().publish(
            "bus.task.inc", b"\xc1 not a task", headers={"Nats-Msg-Id": "bad1"}
        )
    finally:
        await nc.close()
    with anyio.fail_after(15):
        while not (letters := json.loads(bus("dlq", "list", "--json", url=url).stdout)):
            await anyio.sleep(0.1)
    (letter,) = letters
    assert (letter["agent"], letter["reason"], letter["subject"]) == (
        "inc", "invalid_input", "bus.task.inc"
    )  # fmt: skip
    assert str(letter["id"]) in bus("dlq", "list", url=url).stdout
    replayed = bus("dlq", "replay", str(letter["id"]), url=url)
    assert replayed.returncode == 0, replayed.stderr
    assert "bus.task.inc" in replayed.stdout
    with anyio.fail_after(15):  # the agent refuses it again: a new dead letter, the old one gone
        while True:
            ids = [d["id"] for d in json.loads(bus("dlq", "list", "--json", url=url).stdout)]
            if ids and letter["id"] not in ids:
                break
            await anyio.sleep(0.1)


def settings_for_url(url: str) -> Settings:
    return Settings(servers=(url,), explicit=True)


async def test_any_nats_client_can_start_a_run_with_json(url: str, files: Path) -> None:
    assert bus("run", str(files / "seq.yaml"), url=url).returncode == 0  # registers "seq"
    nc = await connect(settings_for_url(url))
    try:
        msg = await nc.request(
            "bus.control.start",
            json.dumps({"topology": "seq", "input": {"n": 1}, "run_id": "json-1"}).encode(),
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
        missing = await nc.request(
            "bus.control.start",
            b'{"topology": "ghost"}',
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
    finally:
        await nc.close()
    assert json.loads(msg.data) == {"run_id": "json-1", "state": "running", "created": True}
    assert (msg.headers or {}).get("Content-Type") == "application/json"
    assert json.loads(missing.data)["kind"] == "not_found"
    async with workflow_client(settings_for_url(url)) as wf:
        assert (await wf.wait_run("json-1", timeout=10)).output == {"n": 3}


async def _coordinator_answers(settings: Settings, timeout: float = 20) -> None:
    """Until a coordinator answers a control request (cancelling an unknown run)."""
    async with workflow_client(settings) as wf:
        with anyio.fail_after(timeout):
            while True:
                try:
                    await wf.cancel_run("ping")
                except UnknownRunError:
                    return
                except Exception:
                    await anyio.sleep(0.05)


def test_sigterm_stops_the_coordinator_cleanly(server: NatsServer) -> None:
    settings = settings_for(server)
    proc = spawn_bus(["coordinator"], settings, env={"BUS_LOG_LEVEL": "info"})
    try:
        anyio.run(_coordinator_answers, settings)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert "coordinator stopped" in Path(proc.log_path).read_text()  # type: ignore[attr-defined]
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_live_view_redraws_in_place_on_a_terminal() -> None:
    import io

    from bus.cli.progress import ProgressView
    from bus.coordinator.notices import step_changes
    from bus.messages import Reply
    from bus.workflow import Step, Topology, apply_reply, start_run

    topology = Topology.build("t", [Step("a"), Step("b")])
    record, _ = start_run(topology, run_id="r", input=1, now=1.0)
    after, _ = apply_reply(topology, record, Reply("r/0/1", "ok", output=2), sender="a", now=2.0)
    out = io.StringIO()
    view = ProgressView(out, redraw=True)
    view.update(record)
    for notice in step_changes(record, after, 2.0):
        view.update(notice)
    screen = out.getvalue()
    assert screen.count("\x1b[3F") == 2  # header + two steps, redrawn after each notice
    last = screen.rsplit("\x1b[3F", 1)[1]
    assert "✔ 0" in last
    assert "▶ 1" in last
