"""Audit records and the hash chain that makes the audit log tamper-evident.

One record per cross-plane message (or per batch of consumed source records). A record carries counts,
sizes, a digest of the payload and the Kafka coordinates of the data message, never feature values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from events.flows import Flow
from events.planes import Component, Plane

GENESIS = bytes(32)
NO_OFFSET = -1


class Outcome(StrEnum):
    ALLOWED = "allowed"
    DENIED = "denied"


@dataclass(frozen=True, slots=True)
class AuditRecord:
    record_id: str
    flow: Flow
    outcome: Outcome
    from_component: Component
    from_plane: Plane
    to_component: Component
    to_plane: Plane
    principal: str
    workspace: str
    subject: str  # feature view, source or feature service the message is about
    message_count: int
    row_count: int
    byte_count: int
    digest: str  # sha256 hex of the payload bytes
    topic: str  # "" for HTTP flows (F1, F4)
    partition: int
    first_offset: int
    last_offset: int
    correlation_id: str
    causation_id: str
    occurred_at: datetime


def payload_digest(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainLink:
    """A stored audit record: its bytes, the hash of the link before it, and its own hash."""

    seq: int
    prev_hash: bytes
    record: bytes
    hash: bytes


def link_hash(prev_hash: bytes, record: bytes) -> bytes:
    return hashlib.sha256(prev_hash + record).digest()


def chain(prev: ChainLink | None, record: bytes) -> ChainLink:
    """The link that appends `record` after `prev` (None: the first link)."""
    seq = 0 if prev is None else prev.seq + 1
    prev_hash = GENESIS if prev is None else prev.hash
    return ChainLink(seq, prev_hash, record, link_hash(prev_hash, record))


def first_broken_link(links: Iterable[ChainLink]) -> int | None:
    """The sequence number of the first link that does not verify, or None if the chain is intact."""
    expected_prev = GENESIS
    for expected_seq, link in enumerate(links):
        if (
            link.seq != expected_seq
            or link.prev_hash != expected_prev
            or link_hash(link.prev_hash, link.record) != link.hash
        ):
            return link.seq
        expected_prev = link.hash
    return None


@dataclass(frozen=True, slots=True)
class QueryAuditLog:
    """Feature server → audit log (F9): the most recent matching records, newest first. Empty filters
    match everything; `subject` is the feature view, source or service a record is about."""

    request_id: str
    reply_to: str
    limit: int
    flow: str = ""
    principal: str = ""
    workspace: str = ""
    subject: str = ""
    correlation_id: str = ""
    causation_id: str = ""
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, record: AuditRecord) -> bool:
        exact = (("flow", self.flow), ("principal", self.principal), ("workspace", self.workspace),
                 ("subject", self.subject), ("correlation_id", self.correlation_id),
                 ("causation_id", self.causation_id))
        if any(wanted and str(getattr(record, name)) != wanted for name, wanted in exact):
            return False
        return (self.since is None or record.occurred_at >= self.since) and \
            (self.until is None or record.occurred_at < self.until)


@dataclass(frozen=True, slots=True)
class AuditLogAnswered:
    """Audit log → feature server (F8): metadata only, like the records themselves."""

    request_id: str
    reply_to: str
    records: tuple[AuditRecord, ...]
    total: int
