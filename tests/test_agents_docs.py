"""The docs agent against a local Context7 API, and its pydoc fallback when that is away."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.context7 import ASYNCIO_DOCS, FakeContext7
from fakes.web import Response, closed_port_url

from agents import _libraries, docs
from bus import PermanentError, TransientError

SAMPLE = Path(__file__).parents[1] / "examples" / "sample_project"


@pytest.fixture
def context7() -> Iterator[FakeContext7]:
    with FakeContext7() as server:
        yield server


def config(url: str, key: str = "") -> docs.Context7Config:
    return docs.Context7Config(url=url, key=key)


async def test_docs_come_from_context7_when_it_answers(context7: FakeContext7) -> None:
    request = docs.DocsRequest(library="asyncio", topic="gather", tokens=500)
    result = await docs.fetch_docs(request, config(context7.url, key="ctx7sk-test"))
    assert (result.source, result.library, result.library_id) == (
        "context7",
        "asyncio",
        "/python/asyncio",
    )
    assert result.text == ASYNCIO_DOCS
    assert result.note == ""
    (sent,) = context7.requests
    assert sent.path == "/v1/python/asyncio"
    assert sent.query == {"tokens": "500", "type": "txt", "topic": "gather"}
    assert sent.headers["authorization"] == "Bearer ctx7sk-test"


async def test_a_context7_id_is_asked_for_as_given(context7: FakeContext7) -> None:
    context7.docs["encode/httpx"] = "httpx docs"
    result = await docs.fetch_docs(docs.DocsRequest(library="/encode/httpx"), config(context7.url))
    assert (result.source, result.library, result.text) == ("context7", "httpx", "httpx docs")
    assert "authorization" not in context7.requests[0].headers


async def test_unreachable_context7_falls_back_to_pydoc_fast() -> None:
    started = time.monotonic()
    request = docs.DocsRequest(library="/python/asyncio", topic="gather", tokens=300)
    result = await docs.fetch_docs(request, config(closed_port_url()))
    assert time.monotonic() - started < 3
    assert result.source == "pydoc"
    assert result.library == "asyncio"
    assert "Context7 unreachable" in result.note
    assert "gather(*coros_or_futures" in result.text
    assert len(result.text) <= 300 * docs.CHARS_PER_TOKEN


async def test_a_library_context7_does_not_know_falls_back_to_pydoc(
    context7: FakeContext7,
) -> None:
    result = await docs.fetch_docs(docs.DocsRequest(library="json"), config(context7.url))
    assert result.source == "pydoc"
    assert result.note == "Context7 answered HTTP 404"
    assert "json" in result.text
    assert len(context7.requests) == 1


async def test_an_empty_answer_falls_back_to_pydoc(context7: FakeContext7) -> None:
    context7.script(Response(200, b"No content available"))
    result = await docs.fetch_docs(docs.DocsRequest(library="asyncio"), config(context7.url))
    assert result.source == "pydoc"
    assert "no documentation" in result.note


async def test_429_is_transient_with_the_servers_retry_after(context7: FakeContext7) -> None:
    context7.script(Response(429, b"Too many requests", {"Retry-After": "3"}))
    with pytest.raises(TransientError, match="429") as caught:
        await docs.fetch_docs(docs.DocsRequest(library="asyncio"), config(context7.url))
    assert caught.value.retry_after == 3.0


async def test_5xx_is_transient(context7: FakeContext7) -> None:
    context7.script(Response(503, b"maintenance"))
    with pytest.raises(TransientError, match="503"):
        await docs.fetch_docs(docs.DocsRequest(library="asyncio"), config(context7.url))


async def test_disabled_context7_answers_from_pydoc_without_the_network() -> None:
    cfg = docs.Context7Config.from_env({"BUS_CONTEXT7_URL": "off"})
    assert cfg.url == ""
    result = await docs.fetch_docs(docs.DocsRequest(library="asyncio"), cfg)
    assert result.source == "pydoc"
    assert result.text.startswith("Python Library Documentation: package asyncio")


async def test_a_path_names_the_library_from_its_imports(context7: FakeContext7) -> None:
    result = await docs.fetch_docs(docs.DocsRequest(path=str(SAMPLE)), config(context7.url))
    assert (result.library, result.source, result.path) == ("asyncio", "context7", str(SAMPLE))


def test_library_choice_prefers_workflow_libraries_then_installed_imports(
    tmp_path: Path,
) -> None:
    (tmp_path / "app.py").write_text("import json\nimport json.decoder\nimport helpers\n")
    (tmp_path / "helpers.py").write_text("import os\n")
    assert _libraries.library_from_imports(str(tmp_path)) == "json"
    (tmp_path / "flow.py").write_text("from asyncio import gather\n")
    assert _libraries.library_from_imports(str(tmp_path)) == "asyncio"


async def test_an_unknown_library_offline_is_a_permanent_error() -> None:
    request = docs.DocsRequest(library="/acme/not_installed_anywhere")
    with pytest.raises(PermanentError, match="no such module is installed"):
        await docs.fetch_docs(request, config(closed_port_url()))


async def test_no_library_and_no_path_is_a_permanent_error() -> None:
    with pytest.raises(PermanentError, match="give a library"):
        await docs.fetch_docs(docs.DocsRequest(), config(""))


def test_pydoc_never_imports_arbitrary_names() -> None:
    assert not _libraries.is_installed("antigravity")
    assert not _libraries.is_installed("os; rm")
    assert _libraries.is_installed("asyncio")
    assert _libraries.is_installed("httpx")  # an installed distribution
