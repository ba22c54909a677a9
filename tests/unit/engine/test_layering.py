"""The engine is pure: it imports the standard library, `events` and itself, nothing with I/O."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parents[3] / "engine"
ALLOWED = {"events", "msgpack"}
IO_MODULES = {"asyncio", "socket", "subprocess", "sqlite3", "urllib", "http", "shutil", "tempfile", "io", "os"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted(ENGINE.glob("*.py")), ids=lambda p: p.name)
def test_engine_modules_import_nothing_with_io(path: Path) -> None:
    for name in _imports(path):
        top = name.split(".")[0]
        if top == "engine":
            assert name.startswith("engine"), f"{path.name} imports {name}"
        else:
            assert top in ALLOWED or (top in sys.stdlib_module_names and top not in IO_MODULES), \
                f"{path.name} imports {name}"
