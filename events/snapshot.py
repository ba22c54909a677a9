"""The registry as the shortest list of control events that folds back into it.

A snapshot is that list, encoded: restoring folds it with the same code that folds the topic, so a
snapshot can never drift from what replaying the control-events topic from offset 0 would give.
"""

from __future__ import annotations

from typing import Any

import msgpack

from events import control
from events.access import RoleGrant
from events.codec import CODEC
from events.errors import DecodeError
from events.planes import Component
from events.registry import Registry, Workspace


def applied_events_of(ws: Workspace) -> list[Any]:
    """One applied event per object of the workspace, in dependency order."""
    return [
        *(control.EntityApplied(e) for e in ws.entities.values()),
        *(control.BatchSourceApplied(s) for s in ws.batch_sources.values()),
        *(control.StreamSourceApplied(s) for s in ws.stream_sources.values()),
        *(control.PushSourceApplied(s) for s in ws.push_sources.values()),
        *(control.FeatureViewApplied(v) for v in ws.feature_views.values()),
        *(control.FeatureServiceApplied(s) for s in ws.feature_services.values()),
    ]

SNAPSHOT_FORMAT = 1


def compacted(registry: Registry) -> list[tuple[str, Any]]:
    """(workspace, event body) pairs that rebuild `registry` when folded in order."""
    events: list[tuple[str, Any]] = []
    for ws in registry.workspaces.values():
        events.append((ws.name, control.WorkspaceCreated(ws.name, ws.live)))
        events += [(ws.name, e) for e in applied_events_of(ws)]
    events += [("", control.PrincipalCreated(p)) for p in registry.principals.values()]
    events += [("", control.ApiKeyIssued(k)) for k in registry.keys.values()]
    for revoked in registry.revoked_keys.values():
        events += [("", control.ApiKeyIssued(revoked)), ("", control.ApiKeyRevoked(revoked.key_id))]
    events += [(workspace, control.RoleAssigned(RoleGrant(principal, workspace, role)))
               for (principal, workspace), role in registry.roles.items()]
    events += [("", control.RepoApplied(apply_id, registry.apply_counts.get(apply_id, 0)))
               for apply_id in sorted(registry.applied)]
    events += [("", control.RepoRejected(apply_id, errors)) for apply_id, errors in registry.rejected.items()]
    events += [("", control.CommandSucceeded(cid) if reason is None else control.CommandRejected(cid, reason))
               for cid, reason in registry.commands.items()]
    return events


def encode_snapshot(registry: Registry) -> bytes:
    messages = [CODEC.encode(CODEC.message(body, producer=Component.CONTROL_PLANE, workspace=workspace))
                for workspace, body in compacted(registry)]
    return msgpack.packb([SNAPSHOT_FORMAT, messages])


def decode_snapshot(payload: bytes) -> Registry:
    try:
        fmt, messages = msgpack.unpackb(payload)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise DecodeError(f"not a registry snapshot: {exc}") from exc
    if fmt != SNAPSHOT_FORMAT:
        raise DecodeError(f"registry snapshot format {fmt!r} is not {SNAPSHOT_FORMAT}")
    return Registry().apply_all(CODEC.decode(m) for m in messages)
