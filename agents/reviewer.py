"""The model reviewer: asks an OpenAI-compatible chat-completions endpoint to review the code.

It shows the agent-side half of resilience: the model is shown the spec and lint findings
(gathered if the input lacks them, see ``agents._review``); calls are rate-limited, cached by
input and behind a circuit breaker. A ``429`` with ``Retry-After`` is a ``TransientError`` that
asks the retry to wait that long, a 5xx or a dead endpoint is a ``TransientError`` the breaker
counts, and any other 4xx, or no endpoint configured at all, is a ``PermanentError`` so the
topology's ``fallback: rule-reviewer`` reviews instead.

Replies are cached by input for 15 minutes: given the planner's spec (as in the conditional
topology) the key changes whenever the spec does; a bare ``{"path": ...}`` is cached as is.

Configuration (read from the environment when this module is imported, as an app does):
``BUS_LLM_URL`` the API base (``http://localhost:11434/v1``) or the full
``.../chat/completions`` URL, ``BUS_LLM_MODEL`` (default ``gpt-4o-mini``), ``BUS_LLM_KEY`` an
optional bearer token, ``BUS_LLM_TIMEOUT`` seconds (default 60). ``make_agent(LLMConfig(...))``
builds the same agent for another endpoint (tests use it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import httpx
import msgspec

from agents import _http
from agents._review import Issue, Review, ReviewRequest, Severity, gather, summarize
from agents.rule_reviewer import rank
from bus import (
    Agent,
    BreakerPolicy,
    CachePolicy,
    ConfigError,
    PermanentError,
    RateLimit,
    RetryPolicy,
)

DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_TIMEOUT = 60.0
SYSTEM_PROMPT = """You are a senior Python reviewer. You get a digest of a code base: its size,
its most complex functions (cyclomatic complexity) and its ruff findings. Reply with one JSON
object and nothing else: {"summary": str, "score": int from 0 to 100, "issues": [{"severity":
"high"|"medium"|"low", "location": "file:line", "message": str}], "recommendations": [str]}.
Rank issues by how much they hurt correctness and maintainability; at most 10 of each."""


class LLMConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Where the model is.

    Attributes:
        url: API base URL or the full chat-completions URL ("": none configured).
        model: model name sent with each request.
        key: bearer token ("" sends none).
        timeout: seconds one HTTP call may take.
    """

    url: str = ""
    model: str = DEFAULT_MODEL
    key: str = ""
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> LLMConfig:
        """Read ``BUS_LLM_URL``, ``BUS_LLM_MODEL``, ``BUS_LLM_KEY``, ``BUS_LLM_TIMEOUT``.

        Raises:
            ConfigError: ``BUS_LLM_TIMEOUT`` is not a positive number.
        """
        raw = environ.get("BUS_LLM_TIMEOUT", "").strip()
        try:
            timeout = float(raw) if raw else DEFAULT_TIMEOUT
        except ValueError:
            timeout = -1.0
        if timeout <= 0:
            raise ConfigError(f"BUS_LLM_TIMEOUT must be a positive number of seconds: {raw!r}")
        return cls(
            url=environ.get("BUS_LLM_URL", "").strip(),
            model=environ.get("BUS_LLM_MODEL", "").strip() or DEFAULT_MODEL,
            key=environ.get("BUS_LLM_KEY", "").strip(),
            timeout=timeout,
        )

    @property
    def endpoint(self) -> str:
        url = self.url.rstrip("/")
        return url if url.endswith("/chat/completions") else url + "/chat/completions"


def make_agent(config: LLMConfig) -> Agent:
    """The ``reviewer`` agent talking to the model ``config`` names."""
    agent = Agent(
        "reviewer",
        version="1",
        description="Code review by an OpenAI-compatible model (falls back to rule-reviewer)",
        retry=RetryPolicy(attempts=3, base=0.5, max=30.0),
        breaker=BreakerPolicy(window=10, min_calls=4, failure_rate=0.5, open_for=30.0),
        rate_limit=RateLimit(rate=2, per=1.0, burst=2),
        cache=CachePolicy(ttl=900.0),
        timeout=config.timeout + 30.0,
        concurrency=4,
    )

    @agent.handler
    async def review(request: ReviewRequest) -> Review:
        """Review the code under ``request.path`` with the configured model."""
        return await llm_review(request, config)

    return agent


async def llm_review(request: ReviewRequest, config: LLMConfig) -> Review:
    """Gather the evidence, ask the model, and turn its answer into a ``Review``.

    Raises:
        PermanentError: no endpoint configured, the endpoint refused the request (4xx other
            than 408/429) or answered something that is not a chat completion.
        TransientError: 429 (with ``retry_after``), 408, 5xx, or the endpoint unreachable.
    """
    if not config.url:
        raise PermanentError("no LLM endpoint configured (set BUS_LLM_URL)")
    evidence = await gather(request)
    body = {
        "model": config.model,
        "temperature": 0,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": json.dumps(summarize(evidence), indent=1)},
        ],
    }
    headers = {"Authorization": f"Bearer {config.key}"} if config.key else {}
    async with _http.client(timeout=config.timeout, connect=5.0, headers=headers) as client:
        try:
            response = await client.post(config.endpoint, json=body)
        except _http.unreachable as exc:
            raise _http.transport_error(exc, "LLM endpoint") from None
    _http.check(response, "LLM endpoint")
    content, model = _content(response)
    baseline = rank(evidence)
    return _review(request.path, content, model or config.model, baseline)


class _Message(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    message: _Message


class _Completion(msgspec.Struct):
    choices: list[_Choice]
    model: str = ""


class _ModelIssue(msgspec.Struct):
    message: str
    severity: str = "medium"
    location: str = ""


class _ModelReview(msgspec.Struct):
    summary: str = ""
    score: float | None = None
    issues: list[_ModelIssue] = []
    recommendations: list[str] = []


def _content(response: httpx.Response) -> tuple[str, str]:
    try:
        completion = msgspec.json.decode(response.content, type=_Completion)
    except msgspec.DecodeError as exc:
        raise PermanentError(f"LLM endpoint: not a chat completion: {exc}") from None
    if not completion.choices or not completion.choices[0].message.content:
        raise PermanentError("LLM endpoint: the completion has no content")
    return completion.choices[0].message.content, completion.model


def _review(path: str, content: str, model: str, baseline: Review) -> Review:
    """The model's JSON answer as a ``Review``; prose is kept as the summary, scored by rules."""
    parsed = _parse(content)
    if parsed is None:
        return Review(
            path=path,
            source="llm",
            score=baseline.score,
            summary=content.strip(),
            top_issues=baseline.top_issues,
            model=model,
        )
    score = baseline.score if parsed.score is None else round(min(max(parsed.score, 0), 100))
    issues = tuple(
        Issue(severity=_severity(i.severity), kind="llm", location=i.location, message=i.message)
        for i in parsed.issues[:10]
    )
    return Review(
        path=path,
        source="llm",
        score=score,
        summary=parsed.summary or content.strip(),
        top_issues=issues,
        recommendations=tuple(parsed.recommendations[:10]),
        model=model,
    )


def _parse(content: str) -> _ModelReview | None:
    start, end = content.find("{"), content.rfind("}")
    if start < 0 or end < start:
        return None
    try:
        return msgspec.json.decode(content[start : end + 1], type=_ModelReview)
    except msgspec.DecodeError:
        return None


_SEVERITIES: dict[str, Severity] = {"high": "high", "medium": "medium", "low": "low"}


def _severity(value: str) -> Severity:
    return _SEVERITIES.get(value.lower(), "medium")


agent = make_agent(LLMConfig.from_env(os.environ))
