"""Logging configuration: JSON lines off a terminal, task fields on every line, no import side
effects. Each case runs in its own interpreter: configuring structlog is process-global."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any


def run_python(code: str, *, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return result


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_importing_bus_configures_nothing() -> None:
    out = run_python(
        """
        import logging, structlog
        import bus, bus.observability.logs, bus.observability.middleware, bus.cli.main
        print(structlog.is_configured(), logging.getLogger().handlers == [])
        """
    ).stdout
    assert out.split() == ["False", "True"]


CHAIN = textwrap.dedent(
    """
    import anyio, structlog
    from bus.agent import Agent
    from bus.messages import ErrorInfo, Task, error_reply, ok_reply
    from bus.middleware.chain import build_chain
    from bus.middleware.context import CallContext
    from bus.observability.logs import configure_logging
    from bus.observability.middleware import observe

    agent = Agent("planner")

    @agent.handler
    async def plan(x: object) -> object:
        return x

    async def ok(ctx):
        structlog.get_logger("agents.planner").info("planning", files=3)
        return ok_reply(ctx.task, 1)

    async def bad(ctx):
        return error_reply(ctx.task, ErrorInfo(kind="permanent", message="bad path"))

    def ctx(step):
        task = Task(id=f"run-7/{step}/1", agent="planner", run_id="run-7", step=step,
                    trace="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        return CallContext(task, agent.default_handler, agent="planner", version="1",
                           mode="durable")

    async def main():
        await build_chain([observe(None)], ok)(ctx("0"))
        await build_chain([observe(None)], bad)(ctx("1"))
"""
)

TASK_FIELDS = {
    "run_id": "run-7",
    "agent": "planner",
    "attempt": 1,
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
}


def test_json_lines_carry_the_task_fields_when_stderr_is_not_a_terminal() -> None:
    result = run_python(CHAIN + "\nconfigure_logging()\nanyio.run(main)\n", env={})
    lines = json_lines(result.stderr)
    assert [line["event"] for line in lines] == ["planning", "task finished", "task failed"]
    for line in lines:
        assert {k: line[k] for k in TASK_FIELDS} == TASK_FIELDS
        assert line["task_id"] == f"run-7/{line['step']}/1"
        assert line["timestamp"].endswith("Z")
    planning, finished, failed = lines
    assert planning["files"] == 3
    assert planning["level"] == "info"
    assert finished["duration_ms"] >= 0
    assert finished["level"] == "info"
    assert failed["level"] == "warning"
    assert failed["error_kind"] == "permanent"
    assert failed["error"] == "bad path"


def test_debug_level_shows_handler_start() -> None:
    result = run_python(CHAIN + "\nconfigure_logging('debug')\nanyio.run(main)\n", env={})
    events = [line["event"] for line in json_lines(result.stderr)]
    assert events[:2] == ["task started", "planning"]


def test_level_and_format_from_the_environment() -> None:
    code = CHAIN + "\nconfigure_logging()\nanyio.run(main)\n"
    quiet = run_python(code, env={"BUS_LOG_LEVEL": "warning"})
    assert [line["event"] for line in json_lines(quiet.stderr)] == ["task failed"]
    console = run_python(code, env={"BUS_LOG_FORMAT": "console"})
    assert "task finished" in console.stderr
    assert "run_id=run-7" in console.stderr
    assert "\x1b[" not in console.stderr  # no colour codes off a terminal
    assert not console.stderr.lstrip().startswith("{")


def test_flags_win_over_the_environment_and_typos_fall_back() -> None:
    code = CHAIN + "\nconfigure_logging('error', 'json')\nanyio.run(main)\n"
    assert run_python(code, env={"BUS_LOG_LEVEL": "debug"}).stderr == ""
    typo = run_python(CHAIN + "\nconfigure_logging()\nanyio.run(main)\n",
                      env={"BUS_LOG_LEVEL": "verbose", "BUS_LOG_FORMAT": "xml"})  # fmt: skip
    assert len(json_lines(typo.stderr)) == 3


def test_stdlib_logging_is_rendered_the_same_way() -> None:
    result = run_python(
        """
        import logging
        from bus.observability.logs import configure_logging
        configure_logging("info", "json")
        logging.getLogger("nats.aio.client").warning("slow consumer on %s", "bus.task.x")
        logging.getLogger("asyncio").info("hidden: third-party info is below the threshold")
        """,
        env={},
    )
    (line,) = json_lines(result.stderr)
    assert line["event"] == "slow consumer on bus.task.x"
    assert line["level"] == "warning"
    assert line["logger"] == "nats.aio.client"


def test_exceptions_become_structured_tracebacks() -> None:
    result = run_python(
        """
        import structlog
        from bus.observability.logs import configure_logging
        configure_logging("info", "json")
        try:
            1 / 0
        except ZeroDivisionError:
            structlog.get_logger().exception("handler crashed")
        """,
        env={},
    )
    (line,) = json_lines(result.stderr)
    assert line["event"] == "handler crashed"
    assert line["exception"][0]["exc_type"] == "ZeroDivisionError"


def test_a_stream_can_be_given() -> None:
    result = run_python(
        """
        import io, sys, structlog
        from bus.observability.logs import configure_logging
        buffer = io.StringIO()
        configure_logging("info", "json", stream=buffer)
        structlog.get_logger().info("hello", n=1)
        sys.stdout.write(buffer.getvalue())
        """,
        env={},
    )
    assert result.stderr == ""
    assert json_lines(result.stdout)[0]["n"] == 1


def test_default_stream_follows_sys_stderr_when_it_is_swapped() -> None:
    result = run_python(
        """
        import io, logging, sys, structlog
        from bus.observability.logs import configure_logging
        real, sys.stderr = sys.stderr, io.StringIO()  # a harness capturing stderr
        configure_logging("info", "json")
        structlog.get_logger().info("captured")
        captured, sys.stderr = sys.stderr, real
        captured.close()  # the harness is done with it
        structlog.get_logger().info("after")
        logging.getLogger("nats").warning("stdlib after")
        """,
        env={},
    )
    assert [line["event"] for line in json_lines(result.stderr)] == ["after", "stdlib after"]


def test_debug_enabled_follows_the_configured_level() -> None:
    result = run_python(
        """
        from bus.observability.logs import configure_logging, debug_enabled
        seen = [debug_enabled()]  # unconfigured structlog writes every level
        for level in ("debug", "info", "warning"):
            configure_logging(level, "json")
            seen.append(debug_enabled())
        print(seen)
        """,
        env={},
    )
    assert result.stdout.strip() == "[True, True, False, False]"
