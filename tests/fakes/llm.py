"""A fake OpenAI-compatible chat-completions API (``POST /v1/chat/completions``)."""

from __future__ import annotations

import json
from typing import Any

from fakes.web import FakeServer, Request, Response

REVIEW = {
    "summary": "quote() does too much; one lint finding hides a real bug.",
    "score": 64,
    "issues": [
        {"severity": "high", "location": "inventory/pricing.py:17", "message": "split quote"},
        {"severity": "urgent", "location": "inventory/stock.py:29", "message": "use `is None`"},
    ],
    "recommendations": ["Extract the discount rules from quote()."],
}


def completion(content: str, model: str = "fake-model") -> Response:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": model,
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": content},
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
    }
    return json_response(200, body)


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        status, json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})}
    )


class FakeLLM(FakeServer):
    """Answers every chat completion with ``content`` (the ``REVIEW`` as JSON by default)."""

    def __init__(self, content: str | None = None) -> None:
        self.content = json.dumps(REVIEW) if content is None else content
        super().__init__(self._answer)

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def _answer(self, request: Request) -> Response:
        if request.method != "POST" or request.path != "/v1/chat/completions":
            return json_response(404, {"error": {"message": "not found"}})
        return completion(self.content)

    def bodies(self) -> list[Any]:
        return [json.loads(r.body) for r in self.requests]


def rate_limited(retry_after: str) -> Response:
    return json_response(429, {"error": {"message": "slow down"}}, {"Retry-After": retry_after})


def server_error(status: int = 500) -> Response:
    return json_response(status, {"error": {"message": "boom"}})
