"""Find the agents a deployment needs credentials for.

- ``agents_in_dir``: import every module of an agents directory (as ``bus agent run`` would,
  with the directory's parent on ``sys.path``) and collect its ``bus.Agent`` attributes, with
  the names of their event consumers.
- ``agents_in_topologies``: every agent a topology file names (``agent:`` and ``fallback:``),
  read as plain YAML/TOML data, so agents served from elsewhere also get a user.
"""

from __future__ import annotations

import importlib
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from bus.agent import Agent
from bus.deploy.permissions import event_consumer
from bus.errors import ConfigError

TOPOLOGY_SUFFIXES = (".yaml", ".yml", ".toml")


def agents_in_dir(directory: str | Path) -> dict[str, list[str]]:
    """Agent name → its event consumer names, for every agent defined in ``directory``.

    Raises:
        ConfigError: the directory is missing, a module fails to import, or two modules
            define different agents with one name.
    """
    root = Path(directory).resolve()
    if not root.is_dir():
        raise ConfigError(f"{directory}: not a directory")
    parent = str(root.parent)
    if parent not in sys.path:
        sys.path.insert(0, parent)
    importlib.invalidate_caches()
    found: dict[str, list[str]] = {}
    for path in sorted(root.glob("*.py")):
        if path.name.startswith("_"):
            continue
        module_name = f"{root.name}.{path.stem}"
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise ConfigError(f"cannot import {module_name}: {exc}") from None
        for agent in _agents_of(module):
            consumers = [event_consumer(agent.name, h) for h in agent.event_handlers]
            if found.get(agent.name, consumers) != consumers:
                raise ConfigError(f"two agents are named {agent.name!r} in {directory}")
            found[agent.name] = consumers
    return found


def agents_in_topologies(directory: str | Path) -> set[str]:
    """Names under ``agent`` and ``fallback`` keys in every topology file of ``directory``.

    Raises:
        ConfigError: the directory is missing or a file is not valid YAML/TOML.
    """
    root = Path(directory)
    if not root.is_dir():
        raise ConfigError(f"{directory}: not a directory")
    names: set[str] = set()
    for path in sorted(root.rglob("*")):
        if path.suffix not in TOPOLOGY_SUFFIXES or not path.is_file():
            continue
        try:
            text = path.read_text()
            data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
        except (OSError, yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read topology: {exc}") from None
        names.update(_named_agents(data))
    return names


def _agents_of(module: object) -> Iterator[Agent]:
    seen: set[int] = set()
    for value in vars(module).values():
        if isinstance(value, Agent) and id(value) not in seen:
            seen.add(id(value))
            yield value


def _named_agents(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("agent", "fallback") and isinstance(value, str):
                yield value
            else:
                yield from _named_agents(value)
    elif isinstance(node, list):
        for item in node:
            yield from _named_agents(item)
