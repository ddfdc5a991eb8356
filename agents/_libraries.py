"""Which library a docs request means, and the local ``pydoc`` text of it.

Library names map to Context7 ids through the seed's ``WORKFLOW_LIBRARIES``; an id maps back to
a module by its last segment. Only modules of the standard library or of an installed
distribution are ever imported, so a request cannot pick arbitrary code to run.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import pydoc
import re
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

from agents._source import python_files, relative, resolve
from bus import PermanentError

WORKFLOW_LIBRARIES = {
    "celery": "/celery/celery",
    "airflow": "/apache/airflow",
    "dask": "/dask/dask",
    "temporal": "/temporalio/temporal",
    "asyncio": "/python/asyncio",
}
"""Library names the seed maps to Context7 ids; other names map to ``/<name>/<name>``."""

_NOT_DOCUMENTED = frozenset({"antigravity", "this", "idlelib", "turtledemo", "__hello__"})


def resolve_library(library: str) -> tuple[str, str]:
    """``(module name, Context7 id)`` for a library name or a Context7 id."""
    if not library.startswith("/"):
        return library, WORKFLOW_LIBRARIES.get(library, f"/{library}/{library}")
    known = {library_id: name for name, library_id in WORKFLOW_LIBRARIES.items()}
    last = library.rstrip("/").rsplit("/", 1)[-1]
    module = re.sub(r"[^0-9a-zA-Z_]", "_", last.lower().removesuffix(".py"))
    return known.get(library, module), library


def library_from_imports(path: str) -> str:
    """The library the code under ``path`` leans on most: a workflow library it imports,
    else its most imported installed module, else ``asyncio`` (blocking)."""
    root = resolve(path)
    files = python_files(root)
    local = {Path(part).stem for f in files for part in Path(relative(f, root)).parts}
    imported: Counter[str] = Counter()
    for file in files:
        try:
            tree = ast.parse(file.read_text(encoding="utf-8"))
        except (SyntaxError, ValueError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported[node.module.split(".")[0]] += 1
    ranked = [name for name, _ in imported.most_common() if name not in local]
    preferred = [name for name in ranked if name in WORKFLOW_LIBRARIES]
    installed = [name for name in ranked if is_installed(name) and name != "__future__"]
    return next(iter(preferred + installed), "asyncio")


def is_installed(name: str) -> bool:
    """Whether ``name`` is a module of the standard library or of an installed distribution
    (only those are imported for pydoc: input never picks arbitrary code to run)."""
    if name in _NOT_DOCUMENTED or not name.isidentifier():
        return False
    if name in sys.stdlib_module_names or name in sys.modules:
        return True
    return name in importlib.metadata.packages_distributions()


def local_docs(module_name: str, topic: str, limit: int) -> str:
    """The pydoc text of ``module_name`` (or of its attribute named in ``topic``), cut to
    ``limit`` characters (blocking: imports the module).

    Raises:
        PermanentError: no such module installed, or it fails to import.
    """
    if not is_installed(module_name):
        raise PermanentError(
            f"no documentation for {module_name!r}: Context7 could not "
            "answer and no such module is installed"
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise PermanentError(f"cannot import {module_name} for its docs: {exc}") from None
    text = pydoc.plain(pydoc.render_doc(_topic_target(module, topic)))
    return text[:limit]


def _topic_target(module: ModuleType, topic: str) -> Any:
    for word in re.findall(r"[A-Za-z_]\w*", topic):
        if not word.startswith("_") and hasattr(module, word):
            return getattr(module, word)
    return module
