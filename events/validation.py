"""Validation of a feature repository's specs: every problem as a sentence that names the object."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from events.specs import FeatureViewSpec, RepoSpec, StreamSourceSpec


def repo_errors(repo: RepoSpec) -> list[str]:
    """What is wrong with a repository, as sentences naming the object; empty if it is valid."""
    errors: list[str] = []
    kinds: list[tuple[str, Iterable[Any]]] = [
        ("entity", repo.entities), ("stream source", repo.stream_sources),
        ("feature view", repo.feature_views), ("feature service", repo.feature_services),
    ]
    for kind, objects in kinds:
        seen: set[str] = set()
        for obj in objects:
            if not obj.name.isidentifier():
                errors.append(f"{kind} '{obj.name}': name must be a Python identifier")
            if obj.name in seen:
                errors.append(f"{kind} '{obj.name}' is declared twice")
            seen.add(obj.name)
    entities = {e.name for e in repo.entities}
    sources = {s.name: s for s in repo.stream_sources}
    views = {v.name for v in repo.feature_views}
    for source in repo.stream_sources:
        if source.field(source.timestamp_field) is None:
            errors.append(f"stream source '{source.name}': timestamp field "
                          f"'{source.timestamp_field}' is not in its schema")
    for view in repo.feature_views:
        errors.extend(_view_errors(view, entities, sources, repo))
    for service in repo.feature_services:
        errors.extend(f"feature service '{service.name}': unknown feature view '{name}'"
                      for name in service.feature_views if name not in views)
    return errors


def _view_errors(view: FeatureViewSpec, entities: set[str], sources: dict[str, StreamSourceSpec],
                 repo: RepoSpec) -> list[str]:
    errors: list[str] = []
    where = f"feature view '{view.name}'"
    if not view.entities:
        errors.append(f"{where}: has no entities")
    errors.extend(f"{where}: unknown entity '{e}'" for e in view.entities if e not in entities)
    source = sources.get(view.source)
    if source is None:
        return [*errors, f"{where}: unknown source '{view.source}'"]
    join_keys = [k for e in repo.entities if e.name in view.entities for k in e.join_keys]
    errors.extend(f"{where}: join key '{k}' is not a column of source '{source.name}'"
                  for k in join_keys if source.field(k) is None)
    for feature in view.features:
        if source.field(feature.column) is None:
            errors.append(f"{where}: feature '{feature.name}' reads column '{feature.column}', "
                          f"which source '{source.name}' does not have")
    if not view.features:
        errors.append(f"{where}: declares no features")
    return errors
