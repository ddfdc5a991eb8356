"""Workflows: topologies, conditions, the run/step state machine and the pure interpreter.

Nothing here does I/O; the coordinator (``bus.coordinator``) drives it.
"""

from bus.workflow.expr import Expr, ExprError, compile_expr
from bus.workflow.graph import to_mermaid
from bus.workflow.interpreter import (
    abandoned,
    apply_reply,
    apply_timeouts,
    cancel_run,
    current_tasks,
    next_deadline,
    start_run,
)
from bus.workflow.loader import (
    decode_topology,
    encode_topology,
    load_directory,
    load_topology,
    parse_topology,
)
from bus.workflow.records import RunRecord, StepRecord
from bus.workflow.states import (
    RejectedTransitionError,
    RunState,
    StepState,
    transition_run,
    transition_step,
)
from bus.workflow.topology import (
    Conditional,
    Node,
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
    "Conditional",
    "Expr",
    "ExprError",
    "Node",
    "Parallel",
    "RejectedTransitionError",
    "RunRecord",
    "RunState",
    "Sequential",
    "Step",
    "StepRecord",
    "StepRetry",
    "StepState",
    "Topology",
    "abandoned",
    "apply_reply",
    "apply_timeouts",
    "cancel_run",
    "compile_expr",
    "conditional",
    "current_tasks",
    "decode_topology",
    "encode_topology",
    "load_directory",
    "load_topology",
    "next_deadline",
    "parallel",
    "parse_topology",
    "sequential",
    "start_run",
    "to_mermaid",
    "transition_run",
    "transition_step",
]
