"""Find the agents of a project: every ``bus.Agent`` in the modules of ``DIR/agents/``."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from bus.agent import Agent
from bus.errors import ConfigError


def agent_references(project: Path) -> list[tuple[str, str]]:
    """``(agent name, "agents.module:attr")`` for every agent under ``project/agents``.

    Modules whose name starts with ``_`` are helpers, not services.

    Raises:
        ConfigError: there is no ``agents/`` directory, or a module fails to import.
    """
    folder = project / "agents"
    if not folder.is_dir():
        raise ConfigError(f"no agents/ directory in {project.resolve()}")
    root = str(project.resolve())
    if root not in sys.path:
        sys.path.insert(0, root)
    found: list[tuple[str, str]] = []
    for path in sorted(folder.glob("*.py")):
        if path.stem.startswith("_"):
            continue
        module_name = f"agents.{path.stem}"
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise ConfigError(f"{path}: cannot import: {exc}") from None
        for attr, value in vars(module).items():
            if isinstance(value, Agent):
                found.append((value.name, f"{module_name}:{attr}"))
    return sorted(dict(found).items())
