"""HTTP for the agents that call web APIs: one client setup, one mapping of failures to errors.

What retrying can fix becomes a ``TransientError`` (the middleware retries it and the breaker
counts it); what it cannot becomes a ``PermanentError`` (a topology ``fallback`` takes over):

- 429 → ``TransientError(retry_after=<Retry-After>)``; 408 and 5xx → ``TransientError`` (with
  ``retry_after`` when a 503 says so);
- any other 4xx → ``PermanentError`` (a wrong key, model or request does not heal by waiting);
- a connection failure or a timeout → ``TransientError`` (``unreachable`` tells the caller
  which exceptions those are, for agents that fall back locally instead).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

import httpx

from bus import PermanentError, TransientError

unreachable = (httpx.TransportError,)
"""httpx failures that mean no answer came: connection refused, DNS, timeouts, resets."""


def client(*, timeout: float, connect: float, headers: Mapping[str, str]) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` with a total and a (shorter) connect timeout."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=connect),
        headers={"User-Agent": "agent-bus-agents/1", **headers},
        follow_redirects=True,
    )


def check(response: httpx.Response, service: str) -> None:
    """Raise the bus error an unsuccessful ``response`` stands for (nothing when 2xx/3xx).

    Raises:
        TransientError: 429, 408 or 5xx; ``retry_after`` from the ``Retry-After`` header.
        PermanentError: any other 4xx.
    """
    status = response.status_code
    if status < 400:
        return
    detail = f"{service}: HTTP {status}"
    if status == 429 or status == 408 or status >= 500:
        wait = retry_after(response.headers.get("Retry-After"))
        reason = "rate limited" if status == 429 else response.reason_phrase or "server error"
        raise TransientError(f"{detail} ({reason})", retry_after=wait)
    body = response.text.strip().replace("\n", " ")[:200]
    raise PermanentError(f"{detail}: {body}" if body else detail)


def transport_error(exc: httpx.TransportError, service: str) -> TransientError:
    """The ``TransientError`` for a request that got no answer."""
    what = "timed out" if isinstance(exc, httpx.TimeoutException) else "unreachable"
    return TransientError(f"{service} {what}: {exc or type(exc).__name__}")


def retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    ``None`` when absent or unreadable; never negative.
    """
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(when.timestamp() - current, 0.0)
