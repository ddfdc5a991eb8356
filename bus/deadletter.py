"""Dead letters: what goes to stream ``BUS_DLQ`` on ``bus.dlq.<agent>``, and how to read it.

The body is the original payload, unchanged, so ``bus dlq replay`` can publish it again to
``Bus-Subject``. Why it was dead-lettered travels in headers.
"""

from __future__ import annotations

from typing import Literal

import msgspec

REASON = "Bus-Reason"
ERROR = "Bus-Error"
AGENT = "Bus-Agent"
TASK_ID = "Bus-Task-Id"
SUBJECT = "Bus-Subject"
ATTEMPTS = "Bus-Attempts"

Reason = Literal["invalid_input", "max_deliver", "permanent", "unknown_handler", "oversized"]


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """One dead letter as ``bus dlq list`` shows it.

    Attributes:
        id: its sequence in ``BUS_DLQ`` (what ``bus dlq replay`` takes).
        agent: the agent that gave up on it.
        reason: why (``invalid_input``, ``max_deliver``, ...).
        error: the last error message.
        task_id: the task's id when it could be decoded.
        subject: where it was originally published (replay sends it there again).
        attempts: deliveries made before giving up.
        size: payload bytes.
    """

    id: int
    agent: str
    reason: str
    error: str = ""
    task_id: str = ""
    subject: str = ""
    attempts: int = 0
    size: int = 0


def dead_letter_headers(
    *,
    agent: str,
    reason: Reason,
    error: str,
    task_id: str,
    subject: str,
    attempts: int,
    content_type: str | None,
) -> dict[str, str]:
    headers = {
        REASON: reason,
        ERROR: error[:1000].replace("\r", " ").replace("\n", " "),
        AGENT: agent,
        TASK_ID: task_id,
        SUBJECT: subject,
        ATTEMPTS: str(attempts),
    }
    if content_type:
        headers["Content-Type"] = content_type
    return headers


def from_headers(seq: int, headers: dict[str, str], size: int) -> DeadLetter:
    """Describe the dead letter stored at ``seq`` from its headers."""
    return DeadLetter(
        id=seq,
        agent=headers.get(AGENT, ""),
        reason=headers.get(REASON, ""),
        error=headers.get(ERROR, ""),
        task_id=headers.get(TASK_ID, ""),
        subject=headers.get(SUBJECT, ""),
        attempts=int(headers.get(ATTEMPTS, "0") or 0),
        size=size,
    )
