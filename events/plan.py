"""Plans: what applying a repository would change in a workspace, computed without I/O.

A plan lists creates, updates and deletes per object. An update is destructive when it changes more
than an object's description, tags, owner or prevent_destroy flag (its materialized data would no
longer match); deleting is always destructive. An object with prevent_destroy may be neither deleted
nor destructively updated: such changes are blocked. A workspace's digest identifies its definitions,
so an apply made from a plan can refuse to run if the workspace changed since.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from events import control
from events.codec import CODEC
from events.registry import OBJECT_KINDS, Workspace
from events.specs import RepoSpec

NON_DESTRUCTIVE_FIELDS = frozenset({"description", "tags", "owner", "prevent_destroy"})
# Set by the control plane when it stores an object, never declared: a repository does not change them.
CONTROL_PLANE_FIELDS = frozenset({"backfill_until"})


class ChangeAction(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Change:
    action: ChangeAction
    kind: str  # "entity", "stream_source", "feature_view", ...
    name: str
    destructive: bool
    blocked: bool  # prevent_destroy forbids it
    fields: tuple[str, ...] = ()  # the fields an update changes

    def describe(self) -> str:
        what = f"{self.action.value} {self.kind.replace('_', ' ')} '{self.name}'"
        if self.fields:
            what += f" ({', '.join(self.fields)})"
        if self.blocked:
            return f"{what}: BLOCKED by prevent_destroy"
        return f"{what}: destructive" if self.destructive else what


def _changed_fields(old: Any, new: Any) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(old)
                 if f.name not in CONTROL_PLANE_FIELDS and getattr(old, f.name) != getattr(new, f.name))


def plan_changes(ws: Workspace | None, repo: RepoSpec) -> tuple[Change, ...]:
    """Creates and updates in dependency order (entities first), then deletes in reverse order."""
    current = ws or Workspace("")
    upserts: list[Change] = []
    deletes: list[Change] = []
    for kind, attr in OBJECT_KINDS:
        old: dict[str, Any] = getattr(current, attr)
        new = {obj.name: obj for obj in getattr(repo, attr)}
        for name, spec in new.items():
            if name not in old:
                upserts.append(Change(ChangeAction.CREATE, kind, name, False, False))
            elif (fields := _changed_fields(old[name], spec)):
                destructive = not set(fields) <= NON_DESTRUCTIVE_FIELDS
                blocked = destructive and bool(getattr(old[name], "prevent_destroy", False))
                upserts.append(Change(ChangeAction.UPDATE, kind, name, destructive, blocked, fields))
        deletes.extend(Change(ChangeAction.DELETE, kind, name, True, bool(getattr(old[name], "prevent_destroy", False)))
                       for name in old if name not in new)
    return (*upserts, *reversed(deletes))


_APPLIED_EVENT: dict[str, Any] = {
    "entity": control.EntityApplied, "batch_source": control.BatchSourceApplied,
    "stream_source": control.StreamSourceApplied, "push_source": control.PushSourceApplied,
    "feature_view": control.FeatureViewApplied, "feature_service": control.FeatureServiceApplied,
}


def change_events(changes: tuple[Change, ...], repo: RepoSpec) -> list[Any]:
    """The control events that carry out `changes` (taken from `repo`), in the plan's order."""
    declared = {(kind, obj.name): obj for kind, attr in OBJECT_KINDS for obj in getattr(repo, attr)}
    return [control.ObjectDeleted(c.kind, c.name) if c.action is ChangeAction.DELETE
            else _APPLIED_EVENT[c.kind](declared[(c.kind, c.name)]) for c in changes]


def workspace_digest(ws: Workspace | None) -> str:
    """Identifies a workspace's definitions (not its name or history): equal digests, equal definitions."""
    if ws is None:
        return "absent"
    repo = RepoSpec(**{attr: tuple(getattr(ws, attr)[n] for n in sorted(getattr(ws, attr)))
                       for _, attr in OBJECT_KINDS})
    return hashlib.sha256(CODEC.encode_value(repo)).hexdigest()[:16]


def plan_id(workspace: str, base_digest: str, repo: RepoSpec) -> str:
    return hashlib.sha256(f"{workspace}/{base_digest}/".encode() + CODEC.encode_value(repo)).hexdigest()[:16]
