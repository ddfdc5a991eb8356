"""The public surface and the direction of dependencies (STYLE rules 2 and 15)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import bus

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "bus"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_all_is_sorted_and_importable() -> None:
    assert bus.__all__ == sorted(bus.__all__)
    for name in bus.__all__:
        assert getattr(bus, name) is not None


def test_py_typed_ships() -> None:
    assert (PACKAGE / "py.typed").exists()


def test_only_transport_imports_nats() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in PACKAGE.rglob("*.py")
        if "transport" not in path.parts
        and any(m == "nats" or m.startswith("nats.") for m in imported_modules(path))
    ]
    assert offenders == []


def test_bus_never_imports_agents_or_topologies() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in PACKAGE.rglob("*.py")
        if any(m.split(".")[0] in {"agents", "topologies"} for m in imported_modules(path))
    ]
    assert offenders == []


def test_only_the_cli_prints() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if "cli" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "print":
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_importing_bus_configures_nothing() -> None:
    code = "import bus, structlog; print(structlog.is_configured())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False"
