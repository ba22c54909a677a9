"""The topic registry: the one place platform topic names live.

Each topic is declared once with the component that consumes it, the event types it may carry, its
partition count and how messages are keyed. A deployment adds a prefix (`fp.`, or a unique one per test)
through `TopicNames`. Stream-source topics belong to the customer and are named by their specs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from events import audit, control, data, jobs
from events.envelope import Message
from events.planes import Component

KeyFunction = Callable[[Message[Any]], bytes | None]


def _by_workspace(message: Message[Any]) -> bytes | None:
    return message.envelope.workspace.encode()


def _by_feature_view(message: Message[Any]) -> bytes | None:
    return f"{message.envelope.workspace}/{message.body.feature_view}".encode()


def _by_reply_to(message: Message[Any]) -> bytes | None:
    return str(message.body.reply_to).encode()


def _unkeyed(message: Message[Any]) -> bytes | None:
    return None


@dataclass(frozen=True, slots=True)
class Topic:
    base: str
    consumer: Component
    events: tuple[type[Any], ...]
    partitions: int
    key: KeyFunction

    def allows(self, body: object) -> bool:
        return isinstance(body, self.events)


COMMANDS: tuple[type[Any], ...] = (
    control.ApplyRepo, control.BootstrapAdmin, control.CreateWorkspace, control.CreateServiceAccount,
    control.IssueApiKey, control.RevokeApiKey, control.AssignRole, control.UnassignRole,
    control.TriggerMaterialization, control.CreateUser,
)
CONTROL_COMMANDS = Topic("control.commands", Component.CONTROL_PLANE, COMMANDS, 1, _unkeyed)
CONTROL_EVENTS = Topic(
    "control.events", Component.FEATURE_SERVER,
    (control.EntityApplied, control.StreamSourceApplied, control.FeatureViewApplied,
     control.FeatureServiceApplied, control.RepoApplied, control.RepoRejected, control.WorkspaceCreated,
     control.BatchSourceApplied, control.PushSourceApplied, control.ObjectDeleted,
     control.PrincipalCreated, control.ApiKeyIssued, control.ApiKeyRevoked, control.RoleAssigned,
     control.RoleUnassigned, control.CommandSucceeded, control.CommandRejected, jobs.JobUpdated),
    1, _by_workspace,
)
ONLINE_WRITES = Topic("online.writes", Component.ONLINE_STORE, (data.WriteOnlineRows, data.WriteTiles), 1,
                      _by_feature_view)
OFFLINE_WRITES = Topic("offline.writes", Component.OFFLINE_STORE, (data.WriteOfflineRows, data.WriteOfflineColumns), 1,
                       _by_feature_view)
ONLINE_READS = Topic("online.reads", Component.ONLINE_STORE, (data.ReadOnlineRows,), 1, _by_reply_to)
ONLINE_REPLIES = Topic("online.replies", Component.FEATURE_SERVER, (data.OnlineRowsRead,), 1, _by_reply_to)
INGEST = Topic("ingest", Component.RIFT, (data.IngestRecords,), 1, _by_workspace)
ONLINE_CHANGELOG = Topic("online.changelog", Component.FEATURE_SERVER, (data.OnlineRowsWritten,), 1,
                         _by_feature_view)
DEAD_LETTER = Topic("dead-letter", Component.OFFLINE_STORE, (data.RecordDeadLettered,), 1, _unkeyed)
AUDIT = Topic("audit", Component.AUDIT_LOG, (audit.AuditRecord,), 1, _unkeyed)
AUDIT_QUERIES = Topic("audit.queries", Component.AUDIT_LOG, (audit.QueryAuditLog,), 1, _by_reply_to)
AUDIT_REPLIES = Topic("audit.replies", Component.FEATURE_SERVER, (audit.AuditLogAnswered,), 1, _by_reply_to)
# Batch materialization: one job topic per kind of compute, so each names the plane it reaches (F8).
JOBS_RIFT = Topic("jobs.rift", Component.RIFT, (jobs.MaterializationJob,), 1, _by_workspace)
JOBS_EXTERNAL = Topic("jobs.external", Component.EXTERNAL_COMPUTE, (jobs.MaterializationJob,), 1, _by_workspace)
JOB_STATUS = Topic("job.status", Component.CONTROL_PLANE, (jobs.JobStatusReported,), 1, _by_workspace)
# The control plane's clock: ticks it sends itself to decide scheduled jobs and retries.
CONTROL_CLOCK = Topic("control.clock", Component.CONTROL_PLANE, (control.TickSchedules,), 1, _unkeyed)

PLATFORM_TOPICS: tuple[Topic, ...] = (
    CONTROL_COMMANDS, CONTROL_EVENTS, ONLINE_WRITES, OFFLINE_WRITES, ONLINE_READS, ONLINE_REPLIES,
    DEAD_LETTER, AUDIT, AUDIT_QUERIES, AUDIT_REPLIES, INGEST, ONLINE_CHANGELOG,
    JOBS_RIFT, JOBS_EXTERNAL, JOB_STATUS, CONTROL_CLOCK,
)


@dataclass(frozen=True, slots=True)
class TopicNames:
    """Resolves declared topics to the names of one deployment."""

    prefix: str = "fp"

    def __post_init__(self) -> None:
        if not self.prefix or not all(c.isalnum() or c in "-_." for c in self.prefix):
            raise ValueError(f"topic prefix {self.prefix!r} must be non-empty [A-Za-z0-9._-]")

    def name(self, topic: Topic) -> str:
        return f"{self.prefix}.{topic.base}"

    def base_of(self, name: str) -> str | None:
        """The base name of a platform topic of this deployment, or None for any other topic."""
        head = f"{self.prefix}."
        return name[len(head):] if name.startswith(head) else None
