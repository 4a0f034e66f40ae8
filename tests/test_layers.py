"""Imports point one way: web/ -> actors/ -> storage/ -> config/, and no driver type above storage/."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("web", "actors", "storage", "config")  # each may import those after it, never those before
DRIVER_MODULES = ("pymongo", "motor", "mongomock", "mongomock_motor", "bson")


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


def test_no_layer_imports_one_above_it():
    upward = []
    for rank, layer in enumerate(LAYERS):
        above = LAYERS[:rank]
        for path in sorted((ROOT / layer).rglob("*.py")):
            for module in imported_modules(path):
                if module.split(".")[0] in above:
                    upward.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not upward, "\n".join(upward)


def test_no_driver_type_is_named_above_storage():
    leaks = []
    for layer in ("web", "actors", "config"):
        for path in sorted((ROOT / layer).rglob("*.py")):
            leaks += [f"{path.relative_to(ROOT)} imports {m}" for m in imported_modules(path) if m.split(".")[0] in DRIVER_MODULES]
    assert not leaks, "\n".join(leaks)
