"""The rule-based reviewer, and the model reviewer against a local chat-completions server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from fakes.llm import REVIEW, FakeLLM, rate_limited, server_error
from fakes.web import Response, closed_port_url

from agents import _http, linter, planner, reviewer, rule_reviewer
from agents._review import ReviewRequest
from bus import ConfigError, PermanentError, TransientError

SAMPLE = Path(__file__).parents[1] / "examples" / "sample_project"


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


def config(server: FakeLLM, **overrides: object) -> reviewer.LLMConfig:
    return msgspec.structs.replace(
        reviewer.LLMConfig(url=server.base_url, model="fake-model", timeout=5.0), **overrides
    )


# -- rule-reviewer ---------------------------------------------------------------------------


async def test_rule_review_of_the_sample_project_ranks_complexity_first() -> None:
    review = await rule_reviewer.review(ReviewRequest(str(SAMPLE)))
    assert review.source == "rules"
    first = review.top_issues[0]
    assert (first.severity, first.kind, first.location) == (
        "high",
        "complexity",
        "inventory/pricing.py:17",
    )
    assert "quote has cyclomatic complexity 17" in first.message
    # 100 - 12 (quote) - 3 (F841) - 3 (E711) - 1 (F401)
    assert review.score == 81
    assert [i.severity for i in review.top_issues] == ["high", "medium", "medium", "low"]
    assert review.recommendations[0].startswith("Split quote (inventory/pricing.py:17)")
    assert any("ruff check --fix" in r for r in review.recommendations)
    assert "most complex function quote (complexity 17)" in review.summary


async def test_rule_review_is_the_same_from_a_path_a_spec_or_a_lint_report() -> None:
    from_path = await rule_reviewer.review(ReviewRequest(str(SAMPLE)))
    spec = msgspec.to_builtins(planner.build_spec(str(SAMPLE)))
    from_spec = await rule_reviewer.review(msgspec.convert(spec, ReviewRequest))
    report = msgspec.to_builtins(await linter.lint(str(SAMPLE)))
    from_lint = await rule_reviewer.review(msgspec.convert(report, ReviewRequest))
    assert from_path.top_issues == from_spec.top_issues == from_lint.top_issues
    assert from_path.score == from_spec.score == from_lint.score


async def test_rule_review_of_simple_code_has_nothing_pressing() -> None:
    review = await rule_reviewer.review(ReviewRequest(str(SAMPLE / "simple")))
    assert (review.score, review.top_issues) == (100, ())
    assert review.recommendations == ("Nothing pressing: keep functions small and ruff clean.",)


# -- reviewer (model) ------------------------------------------------------------------------


async def test_no_endpoint_configured_is_a_permanent_error() -> None:
    with pytest.raises(PermanentError, match="no LLM endpoint configured"):
        await reviewer.llm_review(ReviewRequest(str(SAMPLE)), reviewer.LLMConfig())


def test_config_from_the_environment() -> None:
    env = {"BUS_LLM_URL": "http://llm:8000/v1/", "BUS_LLM_KEY": "k", "BUS_LLM_TIMEOUT": "9"}
    cfg = reviewer.LLMConfig.from_env(env)
    assert (cfg.endpoint, cfg.model, cfg.key, cfg.timeout) == (
        "http://llm:8000/v1/chat/completions",
        "gpt-4o-mini",
        "k",
        9.0,
    )
    assert reviewer.LLMConfig(url="http://x/chat/completions").endpoint == (
        "http://x/chat/completions"
    )
    assert reviewer.LLMConfig.from_env({}).url == ""


async def test_model_review_sends_the_evidence_and_reads_the_answer(llm: FakeLLM) -> None:
    review = await reviewer.llm_review(ReviewRequest(str(SAMPLE)), config(llm, key="sekrit"))
    assert review.source == "llm"
    assert review.model == "fake-model"
    assert review.summary == REVIEW["summary"]
    assert review.score == 64
    assert [i.severity for i in review.top_issues] == ["high", "medium"]  # "urgent" -> medium
    assert review.recommendations == ("Extract the discount rules from quote().",)
    (request,) = llm.requests
    assert request.headers["authorization"] == "Bearer sekrit"
    body = json.loads(request.body)
    assert body["model"] == "fake-model"
    digest = json.loads(body["messages"][1]["content"])
    assert digest["max_complexity"] == 17
    assert digest["most_complex_functions"][0]["function"].endswith("quote")
    assert digest["lint_findings_by_rule"] == {"F841": 1, "F401": 1, "E711": 1}


async def test_prose_answer_is_kept_and_scored_by_the_rules(llm: FakeLLM) -> None:
    llm.content = "Looks mostly fine, but quote() is long."
    review = await reviewer.llm_review(ReviewRequest(str(SAMPLE)), config(llm))
    assert review.summary == "Looks mostly fine, but quote() is long."
    assert review.score == 81


async def test_429_is_transient_with_the_servers_retry_after(llm: FakeLLM) -> None:
    llm.script(rate_limited("7"))
    with pytest.raises(TransientError, match="429") as caught:
        await reviewer.llm_review(ReviewRequest(str(SAMPLE)), config(llm))
    assert caught.value.retry_after == 7.0


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_transient(llm: FakeLLM, status: int) -> None:
    llm.script(server_error(status))
    with pytest.raises(TransientError, match=str(status)) as caught:
        await reviewer.llm_review(ReviewRequest(str(SAMPLE)), config(llm))
    assert type(caught.value) is TransientError


async def test_a_refused_request_is_permanent_so_the_fallback_runs(llm: FakeLLM) -> None:
    llm.script(Response(401, b'{"error": {"message": "bad key"}}'))
    with pytest.raises(PermanentError, match=r"401.*bad key"):
        await reviewer.llm_review(ReviewRequest(str(SAMPLE)), config(llm))


async def test_an_answer_that_is_not_a_completion_is_permanent(llm: FakeLLM) -> None:
    llm.script(Response(200, b"<html>proxy login</html>"))
    with pytest.raises(PermanentError, match="not a chat completion"):
        await reviewer.llm_review(ReviewRequest(str(SAMPLE)), config(llm))


async def test_an_unreachable_endpoint_is_transient() -> None:
    cfg = reviewer.LLMConfig(url=closed_port_url(), timeout=2.0)
    with pytest.raises(TransientError, match="unreachable"):
        await reviewer.llm_review(ReviewRequest(str(SAMPLE)), cfg)


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert _http.retry_after("12") == 12.0
    assert _http.retry_after("-3") == 0.0
    assert _http.retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412500.0) == 10.0
    assert _http.retry_after("soon") is None
    assert _http.retry_after(None) is None


def test_a_bad_timeout_in_the_environment_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="BUS_LLM_TIMEOUT"):
        reviewer.LLMConfig.from_env({"BUS_LLM_TIMEOUT": "soon"})
