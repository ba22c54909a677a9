"""The top-level packages resolve to this repository, not to a same-named package from PyPI."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("package", ["events", "stores", "engine", "actors", "gateway", "scenarios", "deploy", "sdk"])
def test_package_resolves_to_this_repository(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__file__ is not None
    assert Path(module.__file__).resolve().parent == REPO / package
