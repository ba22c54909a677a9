"""Commands to the control plane and the events it publishes on the control-events topic (flow F8).

Workspace lives in the envelope, not in these bodies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from events.access import ApiKeySpec, PrincipalSpec, RoleGrant
from events.specs import (
    BatchSourceSpec,
    EntitySpec,
    FeatureServiceSpec,
    FeatureViewSpec,
    PushSourceSpec,
    RepoSpec,
    StreamSourceSpec,
)


@dataclass(frozen=True, slots=True)
class ApplyRepo:
    """Replace the workspace's definitions with `repo`, atomically."""

    apply_id: str
    repo: RepoSpec
    # From a saved plan: the digest the workspace had when planned; the apply is refused if it changed.
    expected_digest: str = ""


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
class BatchSourceApplied:
    source: BatchSourceSpec


@dataclass(frozen=True, slots=True)
class PushSourceApplied:
    source: PushSourceSpec


@dataclass(frozen=True, slots=True)
class ObjectDeleted:
    """An object that the last apply no longer declares; `kind` as in events.registry.OBJECT_KINDS."""

    kind: str
    name: str


@dataclass(frozen=True, slots=True)
class RepoApplied:
    """Closes an apply: every object event of `apply_id` came before it."""

    apply_id: str
    object_count: int


@dataclass(frozen=True, slots=True)
class RepoRejected:
    apply_id: str
    errors: tuple[str, ...]


# --- access and workspaces ------------------------------------------------------------------------------
# Each command carries a command_id; the control plane answers with the events it causes followed by
# CommandSucceeded, or with CommandRejected alone. The caller is the envelope's principal.


@dataclass(frozen=True, slots=True)
class BootstrapAdmin:
    """The operator's first admin and key; accepted once (or again for the same key)."""

    command_id: str
    principal: PrincipalSpec
    key: ApiKeySpec


@dataclass(frozen=True, slots=True)
class CreateWorkspace:
    command_id: str
    name: str
    live: bool


@dataclass(frozen=True, slots=True)
class CreateServiceAccount:
    command_id: str
    principal: PrincipalSpec
    key: ApiKeySpec


@dataclass(frozen=True, slots=True)
class CreateUser:
    """A user and their first key (admins only); `principal.is_admin` makes the user an account admin too."""

    command_id: str
    principal: PrincipalSpec
    key: ApiKeySpec


@dataclass(frozen=True, slots=True)
class IssueApiKey:
    command_id: str
    key: ApiKeySpec


@dataclass(frozen=True, slots=True)
class RevokeApiKey:
    command_id: str
    key_id: str


@dataclass(frozen=True, slots=True)
class AssignRole:
    command_id: str
    grant: RoleGrant


@dataclass(frozen=True, slots=True)
class UnassignRole:
    command_id: str
    grant: RoleGrant


@dataclass(frozen=True, slots=True)
class WorkspaceCreated:
    name: str
    live: bool


@dataclass(frozen=True, slots=True)
class PrincipalCreated:
    principal: PrincipalSpec


@dataclass(frozen=True, slots=True)
class ApiKeyIssued:
    key: ApiKeySpec


@dataclass(frozen=True, slots=True)
class ApiKeyRevoked:
    key_id: str


@dataclass(frozen=True, slots=True)
class RoleAssigned:
    grant: RoleGrant


@dataclass(frozen=True, slots=True)
class RoleUnassigned:
    grant: RoleGrant


@dataclass(frozen=True, slots=True)
class CommandSucceeded:
    command_id: str


@dataclass(frozen=True, slots=True)
class CommandRejected:
    command_id: str
    reason: str


# --- batch materialization ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TriggerMaterialization:
    """Materialize one batch feature view for start <= t < end now (operator, editor or owner)."""

    command_id: str
    feature_view: str
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class TickSchedules:
    """The control plane's own clock (topic control.clock): send the scheduled jobs and retries due `now`."""

    now: datetime
