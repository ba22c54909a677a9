"""ControlPlane: decides commands and publishes the resulting control events (F8).

`decide` is the pure policy: (registry, command envelope, command) -> events. The caller is the
envelope's principal and every command is authorized here, whatever the gateway already checked. The
control plane is the only writer of the control-events topic, so before each batch it catches up with
that topic and then folds its own decisions in, command by command.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from actors.components.job_table import JobTableFollower, fold
from actors.components.scheduler import DEFAULT_POLICY, JOB_MESSAGES, SchedulerPolicy, decide_jobs
from actors.components.stream_backfill import stamped
from actors.follower import RegistryFollower
from actors.outbox import Outbound
from actors.runtime import Decision, Inbound
from events import control
from events.access import Action, PrincipalKind, denial
from events.codec import CODEC, Codec
from events.envelope import Envelope, new_id
from events.jobs import Compute, JobRecord, JobUpdated, MaterializationJob
from events.plan import change_events, plan_changes, workspace_digest
from events.planes import Component
from events.registry import Registry, Workspace
from events.snapshot import encode_snapshot
from events.topics import (
    CONTROL_CLOCK,
    CONTROL_COMMANDS,
    CONTROL_EVENTS,
    JOB_STATUS,
    JOBS_EXTERNAL,
    JOBS_RIFT,
    Topic,
    TopicNames,
)
from events.validation import repo_errors, workspace_name_problem
from stores.metadata import EncryptedSnapshotStore

REGISTRY_SYNC_TIMEOUT_S = 30.0


def decide_apply(registry: Registry, envelope: Envelope, command: control.ApplyRepo) -> list[Any]:
    """The control events of one apply: the plan's changes in order, then the closing event."""
    workspace, caller = envelope.workspace, envelope.principal
    if not registry.may(caller, Action.APPLY, workspace):
        refusal = denial(f"'{caller}' may not apply to workspace '{workspace}'")
        return [control.RepoRejected(command.apply_id, (refusal,))]
    errors = repo_errors(command.repo)
    if errors:
        return [control.RepoRejected(command.apply_id, tuple(errors))]
    ws = registry.workspaces.get(workspace)
    problem = workspace_name_problem(workspace) if ws is None else None
    if problem is not None:  # the apply creates the workspace: the same name rule as CreateWorkspace
        return [control.RepoRejected(command.apply_id, (problem,))]
    if command.expected_digest and command.expected_digest != workspace_digest(ws):
        return [control.RepoRejected(command.apply_id, (
            f"workspace '{workspace}' changed since the plan was made; run featureplane plan again",))]
    changes = plan_changes(ws, command.repo)
    blocked = tuple(c.describe() for c in changes if c.blocked)
    if blocked:
        return [control.RepoRejected(command.apply_id, blocked)]
    events: list[Any] = [] if ws is not None else [control.WorkspaceCreated(workspace, True)]
    stored, refused = _stored_views(ws, change_events(changes, command.repo), envelope.occurred_at)
    if refused:
        return [control.RepoRejected(command.apply_id, tuple(refused))]
    events += stored
    # All of one apply commits in one transaction: readers never see half a repository.
    return [*events, control.RepoApplied(command.apply_id, len(changes))]


def _stored_views(ws: Workspace | None, events: list[Any], now: datetime) -> tuple[list[Any], list[str]]:
    """The change events with each stream view as stored (its backfill cutoff), and any refusals."""
    out: list[Any] = []
    refused: list[str] = []
    for event in events:
        if isinstance(event, control.FeatureViewApplied):
            old = ws.feature_views.get(event.feature_view.name) if ws is not None else None
            view = stamped(old, event.feature_view, now)
            if isinstance(view, str):
                refused.append(view)
                continue
            event = control.FeatureViewApplied(view)
        out.append(event)
    return out, refused


def _refusal(registry: Registry, envelope: Envelope, command: Any) -> str | None:
    """Why the caller may not run this access or workspace command, or None if it may."""
    caller = envelope.principal
    if isinstance(command, control.BootstrapAdmin):
        return None if envelope.producer is Component.OPERATOR else denial("only the operator bootstraps the admin")
    if isinstance(command, control.AssignRole | control.UnassignRole):
        workspace = command.grant.workspace
        if workspace not in registry.workspaces:
            return f"workspace '{workspace}' does not exist"
        if command.grant.principal_id not in registry.principals:
            return f"principal '{command.grant.principal_id}' does not exist"
        allowed = registry.may(caller, Action.MANAGE_ROLES, workspace)
        return None if allowed else denial(f"'{caller}' may not manage roles in workspace '{workspace}'")
    return None if registry.is_admin(caller) else denial(f"'{caller}' is not an account admin")


def decide_access(registry: Registry, envelope: Envelope, command: Any) -> list[Any]:
    refusal = _refusal(registry, envelope, command)
    if refusal is None:
        refusal, events = _access_events(registry, envelope.principal, command)
    if refusal is not None:
        return [control.CommandRejected(command.command_id, refusal)]
    return [*events, control.CommandSucceeded(command.command_id)]


def _access_events(registry: Registry, caller: str, command: Any) -> tuple[str | None, list[Any]]:
    if isinstance(command, control.BootstrapAdmin):
        if command.key.key_id in registry.keys:
            return None, []  # the same bootstrap again: nothing to do
        if registry.has_admin():
            return "an admin exists already; use its key", []
        admin = replace(command.principal, is_admin=True, created_by=caller)
        return None, [control.PrincipalCreated(admin), control.ApiKeyIssued(command.key)]
    if isinstance(command, control.CreateWorkspace):
        if command.name in registry.workspaces:
            return f"workspace '{command.name}' exists already", []
        problem = workspace_name_problem(command.name)
        if problem is not None:
            return problem, []
        return None, [control.WorkspaceCreated(command.name, command.live)]
    if isinstance(command, control.CreateServiceAccount):
        principal = replace(command.principal, is_admin=False, created_by=caller)
        if principal.principal_id in registry.principals:
            return f"principal '{principal.principal_id}' exists already", []
        if command.key.principal_id != principal.principal_id:
            return "the key does not belong to the new service account", []
        issued = control.ApiKeyIssued(replace(command.key, created_by=caller))
        return None, [control.PrincipalCreated(principal), issued]
    if isinstance(command, control.CreateUser):
        return _user_events(registry, caller, command)
    if isinstance(command, control.IssueApiKey):
        if command.key.principal_id not in registry.principals:
            return f"principal '{command.key.principal_id}' does not exist", []
        return None, [control.ApiKeyIssued(replace(command.key, created_by=caller))]
    if isinstance(command, control.RevokeApiKey):
        if command.key_id not in registry.keys:
            return f"API key '{command.key_id}' does not exist or is revoked already", []
        return None, [control.ApiKeyRevoked(command.key_id)]
    if isinstance(command, control.AssignRole):
        return None, [control.RoleAssigned(command.grant)]
    if isinstance(command, control.UnassignRole):
        return None, [control.RoleUnassigned(command.grant)]
    return f"unknown command {type(command).__name__}", []


def _user_events(registry: Registry, caller: str, command: control.CreateUser) -> tuple[str | None, list[Any]]:
    """A user and their first key; an admin (the only one who gets here) may make them an admin too."""
    user = replace(command.principal, kind=PrincipalKind.USER, created_by=caller)
    if user.principal_id in registry.principals:
        return f"principal '{user.principal_id}' exists already", []
    if command.key.principal_id != user.principal_id:
        return "the key does not belong to the new user", []
    return None, [control.PrincipalCreated(user), control.ApiKeyIssued(replace(command.key, created_by=caller))]


def decide(registry: Registry, envelope: Envelope, command: Any) -> list[Any]:
    if isinstance(command, control.ApplyRepo):
        return decide_apply(registry, envelope, command)
    return decide_access(registry, envelope, command)


def _workspace_of(body: Any, default: str) -> str:
    """Jobs and their records belong to their view's workspace, whatever message caused them (a tick)."""
    if isinstance(body, MaterializationJob):
        return body.workspace
    return body.job.workspace if isinstance(body, JobUpdated) else default


def _topic_of(body: Any) -> Topic:
    if isinstance(body, MaterializationJob):
        return JOBS_EXTERNAL if body.compute is Compute.EXTERNAL else JOBS_RIFT
    return CONTROL_EVENTS


class ControlPlane:
    component = Component.CONTROL_PLANE

    def __init__(self, names: TopicNames, follower: RegistryFollower, codec: Codec = CODEC,
                 snapshots: EncryptedSnapshotStore | None = None, jobs: JobTableFollower | None = None,
                 policy: SchedulerPolicy = DEFAULT_POLICY,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._names = names
        self._follower = follower
        self._codec = codec
        self._snapshots = snapshots
        self._jobs = jobs
        self._policy = policy
        self._clock = clock

    def subscriptions(self) -> Sequence[str]:
        return [self._names.name(CONTROL_COMMANDS), self._names.name(JOB_STATUS), self._names.name(CONTROL_CLOCK)]

    async def handle(self, batch: Sequence[Inbound]) -> Decision:
        # Every earlier batch committed before this one started: once caught up, the registry has them.
        registry = await self._follower.sync(REGISTRY_SYNC_TIMEOUT_S)
        jobs = await self._jobs.sync(REGISTRY_SYNC_TIMEOUT_S) if self._jobs is not None else {}
        if self._snapshots is not None:
            # Everything folded so far is committed: a restart resumes from here, not from offset 0.
            self._snapshots.save(encode_snapshot(registry), self._follower.folded_positions())
        outputs: list[Outbound] = []
        now = self._clock()
        for inbound in batch:
            message = inbound.message
            if message is None or not any(t.allows(message.body) for t in _CONSUMED):
                continue
            for body in self._decide(registry, jobs, message.envelope, message.body, now):
                event = self._codec.message(body, producer=self.component,
                                            workspace=_workspace_of(body, message.envelope.workspace),
                                            caused_by=message.envelope)
                registry = registry.apply(event)
                if isinstance(body, JobUpdated):
                    jobs = fold(jobs, body)
                outputs.append(Outbound(_topic_of(body), event))
        return Decision(outputs)

    def _decide(self, registry: Registry, jobs: dict[str, JobRecord], envelope: Envelope, body: Any,
                now: datetime) -> list[Any]:
        if isinstance(body, JOB_MESSAGES):
            return decide_jobs(registry, jobs, envelope, body, now, new_id, self._policy)
        bodies = decide(registry, envelope, body)
        if not any(isinstance(b, control.RepoApplied) for b in bodies):
            return bodies
        # A new batch view backfills at once (live workspaces only): schedule against the applied registry.
        applied = registry.apply_all(self._codec.message(b, producer=self.component, workspace=envelope.workspace)
                                     for b in bodies)
        return [*bodies, *decide_jobs(applied, jobs, envelope, control.TickSchedules(now), now, new_id,
                                      self._policy)]


_CONSUMED = (CONTROL_COMMANDS, JOB_STATUS, CONTROL_CLOCK)
