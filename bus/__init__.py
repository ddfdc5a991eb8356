"""agent-bus: an event-driven pub-sub bus for multi-agent workflows on NATS."""

from bus.agent import Agent, Options
from bus.errors import (
    BreakerOpenError,
    BusError,
    BusTimeoutError,
    ConfigError,
    ConnectionFailedError,
    InvalidInputError,
    InvalidTransitionError,
    NoAgentError,
    PermanentError,
    RateLimitedError,
    TopologyError,
    TransientError,
)
from bus.messages import ErrorInfo, Event, Reply, Task
from bus.middleware.context import CallContext, Middleware, Next
from bus.policies import BreakerPolicy, CachePolicy, RateLimit, RetryPolicy
from bus.settings import Settings
from bus.workflow.topology import (
    Conditional,
    Parallel,
    Sequential,
    Step,
    StepRetry,
    Topology,
    conditional,
    parallel,
    sequential,
)

__all__ = [
    "Agent",
    "BreakerOpenError",
    "BreakerPolicy",
    "BusError",
    "BusTimeoutError",
    "CachePolicy",
    "CallContext",
    "Conditional",
    "ConfigError",
    "ConnectionFailedError",
    "ErrorInfo",
    "Event",
    "InvalidInputError",
    "InvalidTransitionError",
    "Middleware",
    "Next",
    "NoAgentError",
    "Options",
    "Parallel",
    "PermanentError",
    "RateLimit",
    "RateLimitedError",
    "Reply",
    "RetryPolicy",
    "Sequential",
    "Settings",
    "Step",
    "StepRetry",
    "Task",
    "Topology",
    "TopologyError",
    "TransientError",
    "conditional",
    "parallel",
    "sequential",
]
