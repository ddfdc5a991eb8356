"""Find and import agents by reference, as ``bus agent run``, ``bus up`` and ``bus deploy`` do.

Agent modules are not installed packages: they are imported from a directory on ``sys.path``
(the working directory for ``agents.planner:agent``), the way uvicorn and FastStream load apps.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import msgspec

from bus.agent import Agent
from bus.errors import ConfigError


class AgentModule(msgspec.Struct, frozen=True):
    """An agent and the ``module:attr`` reference that loads it."""

    reference: str
    agent: Agent


def load_agent(reference: str) -> Agent:
    """Import ``module:attr`` from the working directory and check that it is an ``Agent``.

    Raises:
        ConfigError: the reference is malformed, the module or attribute is missing, or the
            object is not an ``Agent``.
    """
    module_name, _, attr = reference.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"expected MODULE:ATTR like 'agents.planner:agent', got {reference!r}")
    _on_path(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"cannot import {module_name!r}: {exc}") from None
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(obj, Agent):
        raise ConfigError(f"{reference} is a {type(obj).__name__}, not a bus.Agent")
    return obj


def agents_in_directory(directory: str | Path) -> list[AgentModule]:
    """Every ``Agent`` defined in the modules of ``directory`` (a package such as ``agents/``),
    sorted by name; modules whose name starts with ``_`` are helpers and are skipped.

    Raises:
        ConfigError: the directory is missing, a module fails to import, or two different
            agents share a name.
    """
    root = Path(directory).resolve()
    if not root.is_dir():
        raise ConfigError(f"{directory}: not a directory")
    _on_path(str(root.parent))
    importlib.invalidate_caches()
    found: dict[str, AgentModule] = {}
    for path in sorted(root.glob("*.py")):
        if path.stem.startswith("_"):
            continue
        module_name = f"{root.name}.{path.stem}"
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise ConfigError(f"{path}: cannot import: {exc}") from None
        for attr, value in vars(module).items():
            if not isinstance(value, Agent):
                continue
            known = found.get(value.name)
            if known is not None and known.agent is not value:
                raise ConfigError(f"two agents are named {value.name!r} in {directory}")
            found.setdefault(value.name, AgentModule(f"{module_name}:{attr}", value))
    return [found[name] for name in sorted(found)]


def _on_path(folder: str) -> None:
    if folder not in sys.path:
        sys.path.insert(0, folder)
