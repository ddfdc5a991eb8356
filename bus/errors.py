"""The one error tree of agent-bus.

::

    BusError
    ├── TransientError            retried with backoff; may carry ``retry_after`` seconds
    │   ├── BusTimeoutError       (also a builtin ``TimeoutError``) a deadline passed
    │   ├── BreakerOpenError      the circuit breaker refused the call
    │   └── RateLimitedError      the rate limiter refused the call
    ├── PermanentError            never retried; a workflow step may take its ``fallback``
    │   └── InvalidInputError     the payload could not be decoded or failed the input type
    ├── ConfigError               a user mistake in settings, topology files or CLI input
    │   └── TopologyError         a topology file or expression is wrong (file, path, reason)
    ├── ConnectionFailedError     no NATS server answered at the configured URLs
    ├── NoAgentError              nobody serves the agent a request was sent to
    └── InvalidTransitionError    a workflow state change the state machine forbids

Every error knows its wire ``kind`` (see ``bus.messages.ErrorKind``) so a handler's exception
becomes a ``Reply.error`` in one place and a received error becomes an exception again.
"""

from __future__ import annotations

from typing import ClassVar, Literal

ErrorKind = Literal[
    "transient", "permanent", "timeout", "breaker_open", "rate_limited", "invalid_input"
]


class BusError(Exception):
    """Base of every error agent-bus raises."""

    kind: ClassVar[ErrorKind] = "permanent"


class TransientError(BusError):
    """A failure worth retrying: the same call may succeed later.

    Args:
        message: what went wrong.
        retry_after: seconds the caller should wait before trying again, when the failing
            dependency said so (an HTTP ``Retry-After``, say); ``None`` lets the retry policy
            choose.
    """

    kind: ClassVar[ErrorKind] = "transient"

    def __init__(self, message: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BusTimeoutError(TransientError, TimeoutError):
    """The handler or the request ran past its deadline."""

    kind: ClassVar[ErrorKind] = "timeout"


class BreakerOpenError(TransientError):
    """The circuit breaker is open: the call was refused without running the handler."""

    kind: ClassVar[ErrorKind] = "breaker_open"


class RateLimitedError(TransientError):
    """The rate limiter refused the call (only when waiting is not allowed)."""

    kind: ClassVar[ErrorKind] = "rate_limited"


class PermanentError(BusError):
    """A failure that retrying cannot fix (bad input, a missing configuration)."""

    kind: ClassVar[ErrorKind] = "permanent"


class InvalidInputError(PermanentError, ValueError):
    """The payload could not be decoded, or it does not match the handler's input type."""

    kind: ClassVar[ErrorKind] = "invalid_input"


class ConfigError(BusError, ValueError):
    """Settings, a file or a command-line value is wrong; the message says which and why."""


class TopologyError(ConfigError):
    """A topology definition is wrong: the message names the file, the path inside it and why."""


class ConnectionFailedError(BusError, ConnectionError):
    """No NATS server could be reached at the configured URLs."""


class NoAgentError(BusError, LookupError):
    """No live instance serves the named agent."""


class InvalidTransitionError(BusError):
    """A run or step state change that the workflow state machine does not allow.

    Args:
        message: what was refused.
        reason: a short label for logs and ``bus_transitions_rejected_total{reason}``
            (``late``, ``duplicate``, ``forged``, ``unknown_run``, ``terminal``, ...).
    """

    def __init__(self, message: str = "", *, reason: str = "illegal") -> None:
        super().__init__(message)
        self.reason = reason


_BY_KIND: dict[str, type[BusError]] = {
    "transient": TransientError,
    "timeout": BusTimeoutError,
    "breaker_open": BreakerOpenError,
    "rate_limited": RateLimitedError,
    "permanent": PermanentError,
    "invalid_input": InvalidInputError,
}


def error_for_kind(kind: str, message: str) -> BusError:
    """Rebuild the exception a remote ``Reply.error`` describes (unknown kinds are permanent)."""
    return _BY_KIND.get(kind, PermanentError)(message)


def is_retryable(kind: str) -> bool:
    """Whether a failure of this wire kind may succeed when tried again."""
    return kind in ("transient", "timeout", "breaker_open", "rate_limited")
