"""Cancel the handlers of a run when the coordinator says it was cancelled."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import anyio


class CancelRegistry:
    """Cancel scopes of in-flight calls, by run id."""

    __slots__ = ("_scopes",)

    def __init__(self) -> None:
        self._scopes: dict[str, set[anyio.CancelScope]] = {}

    @contextmanager
    def scope(self, run_id: str) -> Iterator[anyio.CancelScope]:
        """A cancel scope that ``cancel(run_id)`` cancels (a no-op scope without a run)."""
        with anyio.CancelScope() as scope:
            if not run_id:
                yield scope
                return
            self._scopes.setdefault(run_id, set()).add(scope)
            try:
                yield scope
            finally:
                scopes = self._scopes.get(run_id)
                if scopes is not None:
                    scopes.discard(scope)
                    if not scopes:
                        del self._scopes[run_id]

    def cancel(self, run_id: str) -> int:
        """Cancel every call of ``run_id``; returns how many were running."""
        scopes = self._scopes.pop(run_id, set())
        for scope in scopes:
            scope.cancel()
        return len(scopes)
