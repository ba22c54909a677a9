"""Commands to the control plane and the events it publishes on the control-events topic (flow F8).

Workspace lives in the envelope, not in these bodies.
"""

from __future__ import annotations

from dataclasses import dataclass

from events.specs import EntitySpec, FeatureServiceSpec, FeatureViewSpec, RepoSpec, StreamSourceSpec


@dataclass(frozen=True, slots=True)
class ApplyRepo:
    """Replace the workspace's definitions with `repo`, atomically."""

    apply_id: str
    repo: RepoSpec


@dataclass(frozen=True, slots=True)
class EntityApplied:
    entity: EntitySpec


@dataclass(frozen=True, slots=True)
class StreamSourceApplied:
    source: StreamSourceSpec


@dataclass(frozen=True, slots=True)
class FeatureViewApplied:
    feature_view: FeatureViewSpec


@dataclass(frozen=True, slots=True)
class FeatureServiceApplied:
    feature_service: FeatureServiceSpec


@dataclass(frozen=True, slots=True)
class RepoApplied:
    """Closes an apply: every object event of `apply_id` came before it."""

    apply_id: str
    object_count: int


@dataclass(frozen=True, slots=True)
class RepoRejected:
    apply_id: str
    errors: tuple[str, ...]
