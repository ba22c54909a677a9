"""The registry read model: a pure fold over the control-events topic.

The control plane validates and publishes; the feature server and Rift fold the same events into this
read model (flow F8), so every component agrees on the definitions without calling one another.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from events import control
from events.access import Action, ApiKeySpec, PrincipalSpec, Role, actions_of, without_secret_hash
from events.envelope import Message
from events.errors import UnknownFeatureService, UnknownWorkspace
from events.specs import (
    BatchSourceSpec,
    EntitySpec,
    FeatureServiceSpec,
    FeatureViewSpec,
    PushSourceSpec,
    StreamSourceSpec,
)

# (kind, Workspace/RepoSpec attribute), in dependency order: what an object refers to comes first.
OBJECT_KINDS: tuple[tuple[str, str], ...] = (
    ("entity", "entities"), ("batch_source", "batch_sources"), ("stream_source", "stream_sources"),
    ("push_source", "push_sources"), ("feature_view", "feature_views"), ("feature_service", "feature_services"),
)


@dataclass(frozen=True, slots=True)
class Workspace:
    """A workspace's definitions. Live workspaces materialize and serve; development ones only hold
    definitions."""

    name: str
    entities: dict[str, EntitySpec] = field(default_factory=dict)
    stream_sources: dict[str, StreamSourceSpec] = field(default_factory=dict)
    feature_views: dict[str, FeatureViewSpec] = field(default_factory=dict)
    feature_services: dict[str, FeatureServiceSpec] = field(default_factory=dict)
    live: bool = True
    batch_sources: dict[str, BatchSourceSpec] = field(default_factory=dict)
    push_sources: dict[str, PushSourceSpec] = field(default_factory=dict)
    _join_keys: dict[tuple[str, ...], tuple[str, ...]] = field(default_factory=dict, init=False, repr=False,
                                                                compare=False)

    def join_keys(self, view: FeatureViewSpec) -> tuple[str, ...]:
        # Asked once per record on the materialization path: remembered per entity list. A workspace
        # never changes (an apply makes a new one, with an empty memo), so the memo cannot go stale.
        keys = self._join_keys.get(view.entities)
        if keys is None:
            keys = self._join_keys[view.entities] = tuple(
                key for entity in view.entities for key in self.entities[entity].join_keys)
        return keys

    def views_of_source(self, source: str) -> list[FeatureViewSpec]:
        return [v for v in self.feature_views.values() if v.source == source]

    def service(self, name: str) -> FeatureServiceSpec:
        try:
            return self.feature_services[name]
        except KeyError:
            raise UnknownFeatureService(
                f"feature service '{name}' does not exist in workspace '{self.name}'"
            ) from None


@dataclass(frozen=True, slots=True)
class Registry:
    """Definitions per workspace, and which applies have completed."""

    workspaces: dict[str, Workspace] = field(default_factory=dict)
    applied: frozenset[str] = frozenset()
    apply_counts: dict[str, int] = field(default_factory=dict)  # apply id -> how many objects it changed
    rejected: dict[str, tuple[str, ...]] = field(default_factory=dict)
    principals: dict[str, PrincipalSpec] = field(default_factory=dict)
    keys: dict[str, ApiKeySpec] = field(default_factory=dict)  # revoked keys are removed
    roles: dict[tuple[str, str], Role] = field(default_factory=dict)  # (principal, workspace) -> role
    # command id -> None when it succeeded, else why it was rejected
    commands: dict[str, str | None] = field(default_factory=dict)
    # key id -> what is left of a revoked key: its metadata, without the hash (for `featureplane keys list`)
    revoked_keys: dict[str, ApiKeySpec] = field(default_factory=dict)

    def workspace(self, name: str) -> Workspace:
        try:
            return self.workspaces[name]
        except KeyError:
            raise UnknownWorkspace(f"workspace '{name}' does not exist") from None

    def may(self, principal_id: str, action: Action, workspace: str) -> bool:
        """Whether the principal may do `action` in `workspace` (account admins may do anything)."""
        principal = self.principals.get(principal_id)
        if principal is None:
            return False
        if principal.is_admin:
            return True
        role = self.roles.get((principal_id, workspace))
        return role is not None and action in actions_of(role)

    def is_admin(self, principal_id: str) -> bool:
        principal = self.principals.get(principal_id)
        return principal is not None and principal.is_admin

    def has_admin(self) -> bool:
        return any(p.is_admin for p in self.principals.values())

    def stream_sources(self) -> list[tuple[str, StreamSourceSpec]]:
        return [(ws.name, s) for ws in self.workspaces.values() for s in ws.stream_sources.values()]

    def apply(self, message: Message[Any]) -> Registry:
        """The registry after one control event; other events leave it as it is."""
        body = message.body
        folded = self._apply_access(body)
        if folded is not None:
            return folded
        if isinstance(body, control.RepoApplied):
            return replace(self, applied=self.applied | {body.apply_id},
                           apply_counts={**self.apply_counts, body.apply_id: body.object_count})
        if isinstance(body, control.RepoRejected):
            return replace(self, rejected={**self.rejected, body.apply_id: body.errors})
        name = message.envelope.workspace
        ws = self.workspaces.get(name) or Workspace(name)
        if isinstance(body, control.EntityApplied):
            ws = replace(ws, entities={**ws.entities, body.entity.name: body.entity})
        elif isinstance(body, control.StreamSourceApplied):
            ws = replace(ws, stream_sources={**ws.stream_sources, body.source.name: body.source})
        elif isinstance(body, control.FeatureViewApplied):
            ws = replace(ws, feature_views={**ws.feature_views, body.feature_view.name: body.feature_view})
        elif isinstance(body, control.FeatureServiceApplied):
            svc = body.feature_service
            ws = replace(ws, feature_services={**ws.feature_services, svc.name: svc})
        elif isinstance(body, control.BatchSourceApplied):
            ws = replace(ws, batch_sources={**ws.batch_sources, body.source.name: body.source})
        elif isinstance(body, control.PushSourceApplied):
            ws = replace(ws, push_sources={**ws.push_sources, body.source.name: body.source})
        elif isinstance(body, control.ObjectDeleted):
            attr = dict(OBJECT_KINDS)[body.kind]
            kept: dict[str, Any] = {attr: {k: v for k, v in getattr(ws, attr).items() if k != body.name}}
            ws = replace(ws, **kept)
        else:
            return self
        return replace(self, workspaces={**self.workspaces, name: ws})

    def _apply_access(self, body: object) -> Registry | None:
        """The registry after an access, workspace or command-outcome event; None for any other event."""
        if isinstance(body, control.WorkspaceCreated):
            ws = self.workspaces.get(body.name) or Workspace(body.name)
            return replace(self, workspaces={**self.workspaces, body.name: replace(ws, live=body.live)})
        if isinstance(body, control.PrincipalCreated):
            return replace(self, principals={**self.principals, body.principal.principal_id: body.principal})
        if isinstance(body, control.ApiKeyIssued):
            return replace(self, keys={**self.keys, body.key.key_id: body.key})
        if isinstance(body, control.ApiKeyRevoked):
            gone = self.keys.get(body.key_id)
            revoked = self.revoked_keys if gone is None else {**self.revoked_keys,
                                                              body.key_id: without_secret_hash(gone)}
            return replace(self, keys={k: v for k, v in self.keys.items() if k != body.key_id},
                           revoked_keys=revoked)
        if isinstance(body, control.RoleAssigned):
            grant = body.grant
            return replace(self, roles={**self.roles, (grant.principal_id, grant.workspace): grant.role})
        if isinstance(body, control.RoleUnassigned):
            key = (body.grant.principal_id, body.grant.workspace)
            return replace(self, roles={k: v for k, v in self.roles.items() if k != key})
        if isinstance(body, control.CommandSucceeded):
            return replace(self, commands={**self.commands, body.command_id: None})
        if isinstance(body, control.CommandRejected):
            return replace(self, commands={**self.commands, body.command_id: body.reason})
        return None

    def apply_all(self, messages: Iterable[Message[Any]]) -> Registry:
        registry = self
        for message in messages:
            registry = registry.apply(message)
        return registry
