"""Find the Python sources an agent works on: one path in, the files under it out."""

from __future__ import annotations

import os
from pathlib import Path

from bus import PermanentError

SKIP_DIRS = frozenset(
    {"__pycache__", "node_modules", "site-packages", "build", "dist", "venv", "env"}
)
"""Directories never searched (besides hidden ones such as ``.git`` and ``.venv``)."""

MAX_FILES = 5000


def resolve(path: str) -> Path:
    """The absolute, existing ``path`` an agent was asked to work on.

    Relative paths are taken from the agent process's working directory.

    Raises:
        PermanentError: the path is empty or does not exist (retrying cannot fix it).
    """
    if not path:
        raise PermanentError("no path given")
    resolved = Path(path).expanduser().resolve()
    if not resolved.exists():
        raise PermanentError(f"no such file or directory: {path}")
    return resolved


def base_dir(root: Path) -> Path:
    """The directory that contains ``root``'s sources: itself, or a file's parent."""
    return root if root.is_dir() else root.parent


def python_files(root: Path) -> list[Path]:
    """Every ``.py`` file under ``root`` (or ``root`` itself), sorted, hidden dirs skipped."""
    if root.is_file():
        return [root] if root.suffix == ".py" else []
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS)
        found.extend(Path(folder, name) for name in files if name.endswith(".py"))
        if len(found) > MAX_FILES:
            raise PermanentError(f"more than {MAX_FILES} Python files under {root}")
    return sorted(found)


def relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root``'s directory, with forward slashes."""
    return path.relative_to(base_dir(root)).as_posix()
