"""Imports run one way: events ← projections ← commands; the core never imports the shell."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "sand_es"

#: Which sand_es modules (and which third-party libraries) each core layer may import.
ALLOWED: dict[str, tuple[set[str], set[str]]] = {
    "events": ({"sand_es.events", "sand_es.errors"}, {"msgspec"}),
    "projections": ({"sand_es.events", "sand_es.errors", "sand_es.projections"}, {"msgspec"}),
    "commands": (
        {"sand_es.events", "sand_es.errors", "sand_es.projections", "sand_es.commands"},
        {"msgspec"},
    ),
    # The kernel's pure part; its shell (observe, apply, reconciler) may use pyroute2.
    "kernel": (
        {"sand_es.events", "sand_es.errors", "sand_es.projections", "sand_es.kernel"},
        {"msgspec"},
    ),
}

#: The kernel modules that must stay pure (the others are the shell).
PURE_KERNEL = {"__init__.py", "model.py", "plan.py", "desired.py"}


def imports_of(path: Path) -> set[str]:
    """Every module a source file imports."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def core_files() -> list[tuple[str, Path]]:
    return [
        (layer, path)
        for layer in ALLOWED
        for path in sorted((PACKAGE / layer).glob("*.py"))
        if layer != "kernel" or path.name in PURE_KERNEL
    ]


@pytest.mark.parametrize(("layer", "path"), core_files(), ids=lambda v: v.name if isinstance(v, Path) else v)
def test_core_imports_only_inner_layers(layer: str, path: Path) -> None:
    """A core module imports the standard library, msgspec and inner layers only."""
    own, libraries = ALLOWED[layer]
    stray = {
        name
        for name in imports_of(path)
        if name != "__future__"
        and name.split(".")[0] not in sys.stdlib_module_names
        and name.split(".")[0] not in libraries
        and not any(name == allowed or name.startswith(allowed + ".") for allowed in own)
    }
    assert set() == stray
