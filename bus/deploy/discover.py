"""Find the agents a deployment needs credentials for.

- ``agents_in_dir``: import every module of an agents directory (as ``bus agent run`` would,
  with the directory's parent on ``sys.path``) and collect its ``bus.Agent`` attributes, with
  the names of their event consumers.
- ``agents_in_topologies``: every agent a topology file names (``agent:`` and ``fallback:``),
  read as plain YAML/TOML data, so agents served from elsewhere also get a user.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from bus.deploy.permissions import event_consumer
from bus.errors import ConfigError
from bus.loading import agents_in_directory

TOPOLOGY_SUFFIXES = (".yaml", ".yml", ".toml")


def agents_in_dir(directory: str | Path) -> dict[str, list[str]]:
    """Agent name → its event consumer names, for every agent defined in ``directory``.

    Raises:
        ConfigError: the directory is missing, a module fails to import, or two modules
            define different agents with one name.
    """
    return {
        m.agent.name: [event_consumer(m.agent.name, h) for h in m.agent.event_handlers]
        for m in agents_in_directory(directory)
    }


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
