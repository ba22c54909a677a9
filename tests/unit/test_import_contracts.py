"""The import-linter contracts in pyproject.toml can fail: each one breaks on a planted violation.

`make lint` runs lint-imports on the real tree, where every contract is kept; that alone would also pass
if a contract named a module that does not exist or forbade nothing. So the tree is copied, one probe
module per contract is planted, and lint-imports must report exactly those contracts broken, each by its
probe.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

# contract name (as in pyproject.toml) -> (probe module path, its one import)
PROBES = {
    "Layers point one way": ("stores/_probe_layers.py", "import actors"),
    "events has no I/O": ("events/_probe_io.py", "import pathlib"),
    "ray is imported only by deploy.cluster": ("bench/_probe_ray.py", "import ray"),
    "aiokafka is imported only by actors.kafka_bus": ("gateway/_probe_kafka.py", "import aiokafka"),
    "the aggregation engine is pure": ("engine/_probe_io.py", "import asyncio"),
    "lmdb is imported only in stores": ("scenarios/_probe_lmdb.py", "import lmdb"),
}


CONFIG = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]


def _contract_names() -> list[str]:
    return [contract["name"] for contract in CONFIG["contracts"]]


def _copy_tree(target: Path) -> None:
    for package in CONFIG["root_packages"]:
        shutil.copytree(REPO / package, target / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", target / "pyproject.toml")


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH first, so the copy shadows the editable install of the real tree.
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("contracts")
    _copy_tree(target)
    return target


def test_every_contract_has_a_probe() -> None:
    names = _contract_names()
    assert len(names) == len(PROBES)
    for prefix in PROBES:
        assert sum(name.startswith(prefix) for name in names) == 1, prefix


def test_the_copied_tree_keeps_every_contract(tree: Path) -> None:
    result = _lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(PROBES)} kept, 0 broken." in result.stdout


def test_each_planted_violation_breaks_its_contract(tree: Path, tmp_path: Path) -> None:
    planted = tmp_path / "planted"
    shutil.copytree(tree, planted)
    for path, statement in PROBES.values():
        (planted / path).write_text(statement + "\n")
    result = _lint_imports(planted)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"Contracts: 0 kept, {len(PROBES)} broken." in result.stdout, result.stdout
    report = result.stdout.split("Broken contracts", 1)[1]
    for path, statement in PROBES.values():
        probe = path.removesuffix(".py").replace("/", ".")
        imported = statement.removeprefix("import ")
        assert f"{probe} -> {imported}" in report, (probe, report)
