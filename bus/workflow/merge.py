"""How a ``Parallel`` joins its branches' outputs.

Built-in merges:

- ``by_name``: ``{key: output}``, a branch's key being its step's ``name`` or ``agent``
  (a branch that is not a single step is keyed by its index, ``"0"``, ``"1"``, ...).
- ``list``: ``[output, ...]`` in branch order.
- ``first``: the output of the branch that finished first.

Any other merge is a ``module:function`` reference, imported when the topology is loaded. The
function is called with one argument, the list of ``(key, output)`` pairs of the branches that
joined, in branch order, and returns the merged output; an exception it raises fails the
parallel with a ``permanent`` error. It must be importable in every coordinator process, and
pure and deterministic: the coordinator derives a run's state from its step records on every
change, so the function is called again each time (cheap, same pairs, same result).

With ``quorum=k`` only the first ``k`` branches to succeed join (``first`` implies ``k = 1``
unless a quorum is given); later outputs are ignored.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

from bus.errors import TopologyError

MergeFunction = Callable[[list[tuple[str, Any]]], Any]
BUILTIN_MERGES = ("by_name", "list", "first")


class Joined(NamedTuple):
    """One branch that made it into the join."""

    position: int
    key: str
    output: Any
    seq: int  # the order it finished in (see StepRecord.seq)


@lru_cache(maxsize=256)
def resolve_merge(spec: str) -> MergeFunction | None:
    """Check a merge spec; return the imported function for ``module:function``.

    Returns ``None`` for a built-in merge.

    Raises:
        TopologyError: the spec is neither built in nor an importable callable.
    """
    if spec in BUILTIN_MERGES:
        return None
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise TopologyError(
            f"merge {spec!r} is not one of {', '.join(BUILTIN_MERGES)} or 'module:function'"
        )
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise TopologyError(f"merge {spec!r} cannot be imported: {exc}") from None
    if not callable(target):
        raise TopologyError(f"merge {spec!r} is not callable")
    function: MergeFunction = target
    return function


def merge_outputs(spec: str, joined: Sequence[Joined]) -> Any:
    """The parallel's output from the branches that joined (any order).

    Raises:
        Exception: whatever a custom merge function raises.
    """
    if spec == "first":
        return min(joined, key=lambda j: (j.seq, j.position)).output
    ordered = sorted(joined, key=lambda j: j.position)
    if spec == "by_name":
        return {j.key: j.output for j in ordered}
    if spec == "list":
        return [j.output for j in ordered]
    function = resolve_merge(spec)
    assert function is not None
    return function([(j.key, j.output) for j in ordered])
