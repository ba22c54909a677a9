"""Loading a feature repository folder and compiling what it declares to a `RepoSpec`."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from events.errors import InvalidSpec
from events.specs import RepoSpec
from events.validation import repo_errors
from sdk.objects import Entity, FeatureService, StreamFeatureView, StreamSource


def _load_module(path: Path) -> dict[str, Any]:
    name = f"featureplane_repo_{abs(hash(path))}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise InvalidSpec(f"{path}: cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise InvalidSpec(f"{path}: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.modules.pop(name, None)
    return vars(module)


def load_repo(folder: Path) -> RepoSpec:
    """Every object declared at module level in `folder/*.py` (or one file), compiled and validated."""
    if not folder.exists():
        raise InvalidSpec(f"{folder}: no such feature repository")
    files = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*.py") if "__" not in p.name)
    if not files:
        raise InvalidSpec(f"{folder}: holds no .py files")
    found: dict[type[Any], dict[str, tuple[Path, Any]]] = {
        Entity: {}, StreamSource: {}, StreamFeatureView: {}, FeatureService: {},
    }
    for path in files:
        for obj in _load_module(path).values():
            kind = type(obj)
            if kind not in found:
                continue
            previous = found[kind].get(obj.name)
            if previous is not None and previous[1] is not obj:
                raise InvalidSpec(f"{path}: {kind.__name__} '{obj.name}' is also declared in {previous[0]}")
            found[kind][obj.name] = (path, obj)
    repo = RepoSpec(
        entities=tuple(o.spec() for _, o in found[Entity].values()),
        stream_sources=tuple(o.spec() for _, o in found[StreamSource].values()),
        feature_views=tuple(o.spec() for _, o in found[StreamFeatureView].values()),
        feature_services=tuple(o.spec() for _, o in found[FeatureService].values()),
    )
    if not any(found.values()):
        raise InvalidSpec(f"{folder}: declares no entities, sources, feature views or feature services")
    errors = repo_errors(repo)
    if errors:
        raise InvalidSpec(f"{folder}: " + "; ".join(errors))
    return repo
