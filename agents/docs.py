"""The docs agent: library documentation on a topic, from Context7 or, offline, from pydoc.

Context7 (https://context7.com) serves up-to-date library documentation sized for a model's
context: ``GET {base}/v1/{library_id}?topic=...&tokens=...&type=txt`` answers plain text
(``library_id`` like ``/python/asyncio`` without its leading slash in the URL; an optional API
key goes in ``Authorization: Bearer``). That shape is the one Context7's own MCP server used
for its v1 API; if a deployment differs, only ``_context7`` changes.

When Context7 cannot answer — unreachable (connect timeout 2 s, so offline fails fast), a 4xx,
an unknown library or an empty answer — the handler falls back to the ``pydoc`` text of the
installed module the library id names (its last segment, or the seed's ``WORKFLOW_LIBRARIES``
map), and says so in ``source`` and ``note``. Only a 408, 429 or 5xx is an error (transient: the
retry waits ``Retry-After``, the breaker counts it).

Configuration (environment, read at import): ``BUS_CONTEXT7_URL`` (default
``https://context7.com/api``; empty or ``off`` never calls Context7), ``BUS_CONTEXT7_KEY``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

import anyio.to_thread
import msgspec

from agents import _http
from agents._libraries import library_from_imports, local_docs, resolve_library
from bus import Agent, BreakerPolicy, CachePolicy, PermanentError, RateLimit, RetryPolicy

CONTEXT7_URL = "https://context7.com/api"

CHARS_PER_TOKEN = 4
_NO_CONTENT = ("", "No content available", "No context data available")


class Context7Config(msgspec.Struct, frozen=True, kw_only=True):
    """Where Context7 is.

    Attributes:
        url: API base URL ("": never call Context7, answer from pydoc).
        key: API key ("" sends none; Context7 serves public libraries without one).
        timeout: seconds one request may take; ``connect`` bounds connecting alone.
    """

    url: str = CONTEXT7_URL
    key: str = ""
    timeout: float = 10.0
    connect: float = 2.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Context7Config:
        """Read ``BUS_CONTEXT7_URL`` and ``BUS_CONTEXT7_KEY``."""
        url = environ.get("BUS_CONTEXT7_URL", CONTEXT7_URL).strip()
        return cls(
            url="" if url.lower() in ("off", "none") else url,
            key=environ.get("BUS_CONTEXT7_KEY", "").strip(),
        )


class DocsRequest(msgspec.Struct, frozen=True):
    """A library (a name like ``asyncio`` or a Context7 id like ``/python/asyncio``), a topic
    and a size; or a ``path``, whose most relevant import names the library."""

    library: str = ""
    topic: str = ""
    tokens: int = 2000
    path: str = ""


class Docs(msgspec.Struct, frozen=True):
    """The docs agent's output.

    Attributes:
        library: the module name (``asyncio``); ``library_id`` the Context7 id asked for.
        source: ``context7``, or ``pydoc`` when Context7 could not answer (``note`` says why).
        text: the documentation, at most about ``tokens`` tokens.
        path: the input path, passed through.
    """

    library: str
    library_id: str
    topic: str
    tokens: int
    source: Literal["context7", "pydoc"]
    text: str
    note: str = ""
    path: str = ""


def make_agent(config: Context7Config) -> Agent:
    """The ``docs`` agent reading from the Context7 API that ``config`` names."""
    agent = Agent(
        "docs",
        version="1",
        description="Library docs for a topic from Context7, or local pydoc when offline",
        retry=RetryPolicy(attempts=3, base=0.5, max=20.0),
        breaker=BreakerPolicy(window=10, min_calls=4, failure_rate=0.5, open_for=30.0),
        rate_limit=RateLimit(rate=5, per=1.0, burst=5),
        cache=CachePolicy(ttl=3600.0),
        timeout=config.timeout + 20.0,
    )

    @agent.handler
    async def lookup(request: DocsRequest) -> Docs:
        """Documentation for ``request.library`` (or the code under ``request.path``)."""
        return await fetch_docs(request, config)

    return agent


async def fetch_docs(request: DocsRequest, config: Context7Config) -> Docs:
    """Ask Context7, fall back to pydoc; see the module docstring for when.

    Raises:
        TransientError: Context7 answered 429 (``retry_after`` from ``Retry-After``) or 5xx.
        PermanentError: neither a library nor a path was given, or Context7 could not answer
            and no such module is installed.
    """
    if request.library:
        library = request.library
    elif request.path:
        library = await anyio.to_thread.run_sync(library_from_imports, request.path)
    else:
        raise PermanentError("give a library (or a path whose imports name one)")
    module, library_id = resolve_library(library)
    tokens = min(max(request.tokens, 100), 20_000)
    docs = Docs(
        library=module,
        library_id=library_id,
        topic=request.topic,
        tokens=tokens,
        source="context7",
        text="",
        path=request.path,
    )
    note = "Context7 disabled (BUS_CONTEXT7_URL is off)"
    if config.url:
        text, note = await _context7(config, library_id, request.topic, tokens)
        if text is not None:
            return msgspec.structs.replace(docs, text=text)
    limit = tokens * CHARS_PER_TOKEN
    text = await anyio.to_thread.run_sync(local_docs, module, request.topic, limit)
    return msgspec.structs.replace(docs, source="pydoc", text=text, note=note)


async def _context7(
    config: Context7Config, library_id: str, topic: str, tokens: int
) -> tuple[str | None, str]:
    """Context7's text, or ``None`` and why not (errors only for 429 and 5xx)."""
    params = {"tokens": str(tokens), "type": "txt"} | ({"topic": topic} if topic else {})
    url = f"{config.url.rstrip('/')}/v1/{library_id.strip('/')}"
    headers = {"Authorization": f"Bearer {config.key}"} if config.key else {}
    async with _http.client(timeout=config.timeout, connect=config.connect, headers=headers) as c:
        try:
            response = await c.get(url, params=params)
        except _http.unreachable as exc:
            return None, f"Context7 unreachable ({type(exc).__name__})"
    status = response.status_code
    if status in (408, 429) or status >= 500:
        _http.check(response, "Context7")
    if status >= 400:
        return None, f"Context7 answered HTTP {status}"
    text = response.text.strip()
    if text in _NO_CONTENT:
        return None, f"Context7 has no documentation for {library_id}"
    return text[: tokens * CHARS_PER_TOKEN * 2], ""


agent = make_agent(Context7Config.from_env(os.environ))
