"""The reference agents served on a real nats-server: their middleware at work.

Cache hits, ``Retry-After`` waits and the breaker opening are the agents' policies applied by
the runtime's chain, so they are shown here, through ``bus.agent.<name>`` requests, with the
model and Context7 replaced by local fake servers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.context7 import FakeContext7
from fakes.llm import FakeLLM, rate_limited, server_error
from fakes.web import Request, Response, closed_port_url

from agents import docs, linter, planner, reviewer, tester
from bus import Agent
from bus.client import request_agent
from bus.messages import Reply
from bus.settings import Settings
from bus.testing import running_agent

SAMPLE = Path(__file__).parents[1] / "examples" / "sample_project"


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


@pytest.fixture
def context7() -> Iterator[FakeContext7]:
    with FakeContext7() as server:
        yield server


def llm_agent(server: FakeLLM) -> Agent:
    return reviewer.make_agent(reviewer.LLMConfig(url=server.base_url, timeout=5.0))


def always_500(request: Request) -> Response:
    return server_error(500)


async def open_the_breaker(settings: Settings, agent: str, data: dict[str, object]) -> Reply:
    """Call until the breaker answers (each call with a new input, so the cache stays out)."""
    for attempt in range(6):
        reply = await request_agent(settings, agent, {**data, "tokens": 1000 + attempt})
        assert reply.error is not None
        if reply.error.kind == "breaker_open":
            return reply
        assert reply.error.kind == "transient"
    pytest.fail("the breaker never opened")


async def test_served_planner_linter_and_tester_work_on_the_sample(settings: Settings) -> None:
    path = {"path": str(SAMPLE)}
    async with (
        running_agent(planner.agent, settings),
        running_agent(linter.agent, settings),
        running_agent(tester.agent, settings),
    ):
        spec = await request_agent(settings, "planner", path)
        assert spec.ok
        lint = await request_agent(settings, "linter", spec.output)
        tests = await request_agent(settings, "tester", lint.output, timeout=60)
    assert spec.output["complexity"] == 17
    assert lint.output["by_rule"] == {"F841": 1, "F401": 1, "E711": 1}
    assert tests.output["failed"] == 1
    assert tests.output["path"] == str(SAMPLE)


async def test_reviewer_second_identical_call_is_a_cache_hit(
    settings: Settings, llm: FakeLLM
) -> None:
    async with running_agent(llm_agent(llm), settings):
        first = await request_agent(settings, "reviewer", {"path": str(SAMPLE)})
        second = await request_agent(settings, "reviewer", {"path": str(SAMPLE)})
    assert (first.ok, first.cached) == (True, False)
    assert (second.ok, second.cached) == (True, True)
    assert second.output == first.output
    assert len(llm.requests) == 1


async def test_reviewer_waits_the_retry_after_of_a_429(settings: Settings, llm: FakeLLM) -> None:
    llm.script(rate_limited("1"))
    async with running_agent(llm_agent(llm), settings):
        started = time.monotonic()
        reply = await request_agent(settings, "reviewer", {"path": str(SAMPLE / "simple")})
        elapsed = time.monotonic() - started
    assert reply.ok
    assert reply.output["source"] == "llm"
    assert len(llm.requests) == 2
    assert elapsed >= 1.0  # the server's Retry-After, not the policy's 0.5 s base backoff


async def test_reviewer_breaker_opens_on_repeated_5xx(settings: Settings, llm: FakeLLM) -> None:
    llm.answer = always_500
    async with running_agent(llm_agent(llm), settings):
        await open_the_breaker(settings, "reviewer", {"path": str(SAMPLE / "simple")})
        calls = len(llm.requests)
        refused = await request_agent(settings, "reviewer", {"path": str(SAMPLE)})
    assert refused.error is not None
    assert refused.error.kind == "breaker_open"
    assert len(llm.requests) == calls  # refused without calling the model


async def test_reviewer_without_endpoint_fails_permanently(settings: Settings) -> None:
    agent = reviewer.make_agent(reviewer.LLMConfig())
    async with running_agent(agent, settings):
        reply = await request_agent(settings, "reviewer", {"path": str(SAMPLE)})
    assert reply.error is not None
    assert reply.error.kind == "permanent"
    assert "no LLM endpoint configured" in reply.error.message


async def test_docs_second_identical_call_is_a_cache_hit(
    settings: Settings, context7: FakeContext7
) -> None:
    agent = docs.make_agent(docs.Context7Config(url=context7.url))
    request = {"library": "asyncio", "topic": "gather"}
    async with running_agent(agent, settings):
        first = await request_agent(settings, "docs", request)
        second = await request_agent(settings, "docs", request)
    assert first.output["source"] == "context7"
    assert (first.cached, second.cached) == (False, True)
    assert len(context7.requests) == 1


async def test_docs_breaker_opens_on_repeated_5xx(
    settings: Settings, context7: FakeContext7
) -> None:
    context7.answer = lambda request: Response(502, b"bad gateway")
    agent = docs.make_agent(docs.Context7Config(url=context7.url))
    async with running_agent(agent, settings):
        await open_the_breaker(settings, "docs", {"library": "asyncio"})
        calls = len(context7.requests)
        refused = await request_agent(settings, "docs", {"library": "json"})
    assert refused.error is not None
    assert refused.error.kind == "breaker_open"
    assert len(context7.requests) == calls


async def test_docs_offline_answers_from_pydoc(settings: Settings) -> None:
    agent = docs.make_agent(docs.Context7Config(url=closed_port_url()))
    async with running_agent(agent, settings):
        reply = await request_agent(settings, "docs", {"path": str(SAMPLE)})
    assert reply.ok
    assert (reply.output["library"], reply.output["source"]) == ("asyncio", "pydoc")
    assert "Context7 unreachable" in reply.output["note"]
