"""Loading a feature repository folder and compiling what it declares to a `RepoSpec`.

Every object declared at module level counts; objects only referenced (say, an Entity built inline in
a view) do not, and validation reports them as unknown. Files may import each other's objects (the
repository's folder is on `sys.path` while it loads). Every problem is reported at once, each prefixed
by the file that declares the object.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from events.errors import InvalidSpec
from events.specs import RepoSpec
from events.validation import VIEW, Problem, repo_problems
from sdk.objects import BatchSource, Entity, PushSource, StreamSource
from sdk.views import BatchFeatureView, FeatureService, RealtimeFeatureView, StreamFeatureView

Declarable = (Entity | BatchSource | StreamSource | PushSource | BatchFeatureView | StreamFeatureView
              | RealtimeFeatureView | FeatureService)
_DECLARABLE = (Entity, BatchSource, StreamSource, PushSource, BatchFeatureView, StreamFeatureView,
               RealtimeFeatureView, FeatureService)
_KINDS = {Entity: "entity", BatchSource: "batch source", StreamSource: "stream source", PushSource: "push source",
          BatchFeatureView: "feature view", StreamFeatureView: "feature view", RealtimeFeatureView: "feature view",
          FeatureService: "feature service"}


class InvalidRepo(InvalidSpec):
    """A repository that does not compile; `errors` holds one sentence per problem, each naming its file."""

    def __init__(self, errors: Iterable[str]) -> None:
        self.errors = tuple(errors)
        super().__init__("\n".join(self.errors))


@dataclass
class _Declared:
    """Module-level objects by (namespace, name), with the file that declares each."""

    objects: dict[tuple[str, str], tuple[Path, Declarable]] = field(default_factory=dict)
    load_errors: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)

    def add(self, path: Path, obj: Declarable) -> None:
        key = (obj.namespace, obj.name)
        previous = self.objects.get(key)
        if previous is None:
            self.objects[key] = (path, obj)
        elif previous[1] is not obj:  # the same object bound to two variables is one declaration
            self.duplicates.append(f"{path}: {_KINDS[type(obj)]} '{obj.name}' is declared twice "
                                   f"(also in {previous[0]})")

    def of(self, *kinds: type) -> list[Any]:
        return [obj for _, obj in self.objects.values() if isinstance(obj, kinds)]


def _load_module(path: Path) -> dict[str, Any]:
    name = f"featureplane_repo_{abs(hash(path))}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise InvalidSpec(f"{path}: cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except InvalidSpec as exc:  # a DSL object given a wrong value: point at the line that declares it
        lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__)
                 if Path(f.filename).resolve() == path.resolve()]
        where = f"{path}:{lines[-1]}" if lines else str(path)
        raise InvalidSpec(f"{where}: {exc.message}") from exc
    except Exception as exc:
        raise InvalidSpec(f"{path}: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.modules.pop(name, None)
    return vars(module)


def _declared(root: Path, files: list[Path]) -> _Declared:
    """The objects each file declares. `root` is importable meanwhile, so files can import each other;
    an object a file only imports is declared by the file it comes from, not by the importer.
    """
    namespaces: dict[Path, dict[str, Any]] = {}
    declared = _Declared()
    before = set(sys.modules)
    sys.path.insert(0, str(root))
    try:
        for path in files:
            try:
                namespaces[path] = _load_module(path)
            except InvalidSpec as exc:
                declared.load_errors.append(exc.message)
    finally:
        sys.path.remove(str(root))
        # Forget the repository's modules so that the next load (maybe of another repository) runs them anew.
        imported = [sys.modules.pop(name) for name in set(sys.modules) - before
                    if _imported_from(root, name, sys.modules[name])]
    borrowed = {id(obj) for module in imported for obj in vars(module).values() if isinstance(obj, _DECLARABLE)}
    for path, namespace in namespaces.items():
        for obj in namespace.values():
            if isinstance(obj, _DECLARABLE) and id(obj) not in borrowed:
                declared.add(path, obj)
    return declared


def _imported_from(root: Path, name: str, module: object) -> bool:
    """Whether `module` is a file of the repository imported by its path from `root` (`sub.x` for
    `root/sub/x.py`), not, say, a library that happens to live below `root` in a virtualenv."""
    file = getattr(module, "__file__", None)
    if file is None or not Path(file).resolve().is_relative_to(root.resolve()):
        return False
    parts = Path(file).resolve().relative_to(root.resolve()).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts) == name


def _compile(declared: _Declared) -> tuple[RepoSpec, list[Problem]]:
    problems: list[Problem] = []
    views = []
    for view in declared.of(BatchFeatureView, StreamFeatureView, RealtimeFeatureView):
        spec, errors = view.compile()
        views.append(spec)
        problems.extend(Problem(VIEW, view.name, e) for e in errors)
    repo = RepoSpec(
        entities=tuple(o.spec() for o in declared.of(Entity)),
        stream_sources=tuple(o.spec() for o in declared.of(StreamSource)),
        feature_views=tuple(views),
        feature_services=tuple(o.spec() for o in declared.of(FeatureService)),
        batch_sources=tuple(o.spec() for o in declared.of(BatchSource)),
        push_sources=tuple(o.spec() for o in declared.of(PushSource)),
    )
    return repo, problems


def load_repo(folder: Path) -> RepoSpec:
    """Every object declared at module level in `folder/*.py` (or one file), compiled and validated."""
    if not folder.exists():
        raise InvalidSpec(f"{folder}: no such feature repository")
    files = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*.py") if "__" not in p.name)
    if not files:
        raise InvalidSpec(f"{folder}: holds no .py files")
    declared = _declared(folder if folder.is_dir() else folder.parent, files)
    if declared.load_errors:
        # Objects of a file that did not load are missing: checking references now would only add noise.
        raise InvalidRepo([*declared.load_errors, *declared.duplicates])
    if not declared.objects:
        raise InvalidSpec(f"{folder}: declares no entities, sources, feature views or feature services")
    repo, problems = _compile(declared)
    problems.extend(repo_problems(repo))
    if problems or declared.duplicates:
        files_of = {key: path for key, (path, _) in declared.objects.items()}
        raise InvalidRepo([*declared.duplicates,
                           *(f"{files_of.get((p.namespace, p.name), folder)}: {p.text}" for p in problems)])
    return repo

