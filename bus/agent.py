"""Declare an agent: a name, a version, handlers and the policies of their middleware.

>>> agent = Agent("planner", version="1", retry=RetryPolicy(attempts=5))
>>> @agent.handler
... async def plan(request: PlanRequest) -> Plan: ...

Declaring does no I/O; ``bus agent run MODULE:ATTR`` (or
``bus.runtime.service.AgentService``) serves it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, get_type_hints, overload

import msgspec

from bus.middleware.context import CallContext, Middleware
from bus.policies import BreakerPolicy, CachePolicy, RateLimit, RetryPolicy
from bus.subjects import check_agent_name, check_event_type

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_TIMEOUT = 30.0
DEFAULT_CONCURRENCY = 16
DEFAULT_RETRY = RetryPolicy()


class Options(msgspec.Struct, frozen=True, kw_only=True):
    """The middleware configuration of an agent or of one of its handlers.

    Attributes:
        retry: in-agent retries of transient failures (``None``: a single attempt).
        breaker: circuit breaker (``None``: none).
        rate_limit: token bucket (``None``: unlimited).
        cache: dedup cache by input (``None``: every call runs).
        timeout: seconds a call may run when the task carries no deadline.
        concurrency: calls in flight at once in one process.
        middleware: custom middleware, innermost last, placed just outside the handler.
    """

    retry: RetryPolicy | None = DEFAULT_RETRY
    breaker: BreakerPolicy | None = None
    rate_limit: RateLimit | None = None
    cache: CachePolicy | None = None
    timeout: float = DEFAULT_TIMEOUT
    concurrency: int = DEFAULT_CONCURRENCY
    middleware: tuple[Middleware, ...] = ()


class HandlerSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One handler of an agent: the function, its declared types and its options."""

    name: str
    func: Callable[..., Any]
    input_type: Any
    output_type: Any
    takes_context: bool
    is_async: bool
    options: Options
    event_types: tuple[str, ...] = ()


class Agent:
    """An agent: a named, versioned service of handlers.

    Args:
        name: one NATS subject token; the agent is reached on ``bus.agent.<name>`` and
            ``bus.task.<name>``.
        version: bump it when outputs change; it is part of the dedup cache key.
        description: shown by ``bus agents`` and in the NATS micro INFO.
        retry, breaker, rate_limit, cache, timeout, concurrency, middleware: the default
            ``Options`` of every handler (a handler may override any of them).
    """

    def __init__(
        self,
        name: str,
        version: str = "1",
        *,
        description: str = "",
        retry: RetryPolicy | None = DEFAULT_RETRY,
        breaker: BreakerPolicy | None = None,
        rate_limit: RateLimit | None = None,
        cache: CachePolicy | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        concurrency: int = DEFAULT_CONCURRENCY,
        middleware: Sequence[Middleware] = (),
    ) -> None:
        self.name = check_agent_name(name)
        self.version = version
        self.description = description
        self.options = Options(
            retry=retry,
            breaker=breaker,
            rate_limit=rate_limit,
            cache=cache,
            timeout=timeout,
            concurrency=concurrency,
            middleware=tuple(middleware),
        )
        self.handlers: dict[str, HandlerSpec] = {}
        self.event_handlers: dict[str, HandlerSpec] = {}

    def __repr__(self) -> str:
        return f"Agent({self.name!r}, version={self.version!r})"

    @property
    def default_handler(self) -> HandlerSpec | None:
        """The handler tasks without a ``handler`` name go to: the first one declared."""
        return next(iter(self.handlers.values()), None)

    @overload
    def handler(self, func: F, /) -> F: ...

    @overload
    def handler(self, *, name: str | None = None, **options: Any) -> Callable[[F], F]: ...

    def handler(  # type: ignore[misc]
        self, func: F | None = None, /, *, name: str | None = None, **options: Any
    ) -> F | Callable[[F], F]:
        """Register a task handler: ``@agent.handler`` or ``@agent.handler(timeout=5, ...)``.

        The handler takes its input (a msgspec Struct, or any type msgspec can convert plain
        data to) or a ``CallContext``, and returns something msgspec can encode.
        ``options`` override the agent's ``Options`` fields for this handler.
        """

        def register(f: F) -> F:
            spec = self._spec(f, name or f.__name__, options)
            self.handlers[spec.name] = spec
            return f

        return register(func) if func is not None else register

    def on_event(self, *event_types: str, **options: Any) -> Callable[[F], F]:
        """Register a handler for published events (``bus.event.<type>``; wildcards ok).

        All replicas of the agent share one durable consumer per handler, so each event is
        handled once per agent, not once per process.
        """
        if not event_types:
            raise ValueError("on_event needs at least one event type")
        for pattern in event_types:
            check_event_type(pattern.replace("*", "x").replace(">", "x"))

        def register(f: F) -> F:
            spec = self._spec(f, f.__name__, options, event_types=event_types)
            self.event_handlers[spec.name] = spec
            return f

        return register

    def _spec(
        self,
        func: Callable[..., Any],
        name: str,
        overrides: dict[str, Any],
        event_types: tuple[str, ...] = (),
    ) -> HandlerSpec:
        check_agent_name(name)
        unknown = set(overrides) - set(Options.__struct_fields__)
        if unknown:
            raise TypeError(f"unknown handler option(s): {', '.join(sorted(unknown))}")
        if "middleware" in overrides:
            overrides = {**overrides, "middleware": tuple(overrides["middleware"])}
        input_type, output_type, takes_context = _signature(func)
        return HandlerSpec(
            name=name,
            func=func,
            input_type=input_type,
            output_type=output_type,
            takes_context=takes_context,
            is_async=inspect.iscoroutinefunction(func),
            options=msgspec.structs.replace(self.options, **overrides),
            event_types=event_types,
        )


def _signature(func: Callable[..., Any]) -> tuple[Any, Any, bool]:
    hints = get_type_hints(func)
    params = list(inspect.signature(func).parameters)
    input_type: Any = hints.get(params[0], Any) if params else Any
    output_type: Any = hints.get("return", Any)
    if input_type is CallContext:
        return Any, output_type, True
    return input_type, output_type, False
