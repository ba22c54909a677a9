"""Building audit records for the messages a component sends or consumes across a plane boundary."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from events.audit import NO_OFFSET, AuditRecord, Outcome, payload_digest
from events.data import (
    Coordinates,
    IngestRecords,
    OnlineRowsRead,
    RecordDeadLettered,
    SourceRange,
    WriteOfflineColumns,
    WriteOfflineRows,
    WriteOnlineRows,
    WriteTiles,
)
from events.envelope import Envelope, new_id
from events.errors import FlowDenied
from events.flows import FLOW_RULES, NOMINAL, Flow
from events.planes import PLANE_OF, Component, Plane
from events.routes import flow_for
from events.topics import Topic


def subject_of(body: Any) -> str:
    """What a message is about, for audit queries: a feature view, source, service or apply."""
    for attr in ("feature_view", "feature_service", "source", "entity", "apply_id"):
        value = getattr(body, attr, None)
        if isinstance(value, str):
            return value
        if value is not None and isinstance(getattr(value, "name", None), str):
            return str(value.name)
        if isinstance(value, SourceRange):
            return value.topic
    return type(body).__name__


def rows_in(body: Any) -> int:
    for attr in ("rows", "lookups", "records", "tiles"):
        value = getattr(body, attr, None)
        if isinstance(value, tuple):
            return len(value)
    count = getattr(body, "row_count", None)  # a changelog entry says how many rows its write applied
    return count if isinstance(count, int) else 0


# Bodies that carry feature values or raw records: never into the control plane (DESIGN's invariant).
FEATURE_DATA = (WriteOnlineRows, WriteOfflineRows, WriteOfflineColumns, WriteTiles, OnlineRowsRead, IngestRecords,
                RecordDeadLettered)


def outbound_flow(sender: Component, topic: Topic, body: Any = None) -> Flow | None:
    """The flow of a message from `sender` on `topic`; FlowDenied names the flow it may not use."""
    from_plane, to_plane = PLANE_OF[sender], PLANE_OF[topic.consumer]
    try:
        flow = flow_for(sender, topic.base)
    except KeyError:
        nominal = NOMINAL.get((from_plane, to_plane))
        raise FlowDenied(f"{sender} may not send on topic {topic.base}: no such flow is declared",
                         flow=nominal.value if nominal else "none") from None
    if body is not None and not topic.allows(body):
        raise FlowDenied(f"topic {topic.base} does not carry {type(body).__name__}",
                         flow=flow.value if flow else "none")
    if to_plane is Plane.CONTROL and isinstance(body, FEATURE_DATA):
        named = flow or NOMINAL[(from_plane, to_plane)]
        raise FlowDenied(f"{type(body).__name__} carries feature data, which never enters the control plane "
                         f"(flow {named.value}: {FLOW_RULES[named].description})", flow=named.value)
    return flow


def audit_denied(sender: Component, topic: Topic, envelope: Envelope, body: Any, payload: bytes,
                 error: FlowDenied) -> AuditRecord:
    """The record of a message that was refused at the seam and not sent."""
    flow = Flow(error.flow) if error.flow in Flow.__members__ else NOMINAL.get(
        (PLANE_OF[sender], PLANE_OF[topic.consumer]), Flow.F9)
    record = make_record(flow, sender, topic.consumer, envelope, subject=subject_of(body), message_count=1,
                         row_count=rows_in(body), byte_count=len(payload), digest=payload_digest(payload),
                         topic=topic.base)
    return replace(record, outcome=Outcome.DENIED)


def audit_sent(sender: Component, topic: Topic, envelope: Envelope, body: Any, payload: bytes,
               at: Coordinates) -> AuditRecord | None:
    """The audit record of one message sent on `topic`, or None when it stays inside a plane."""
    flow = outbound_flow(sender, topic, body)
    if flow is None:
        return None
    return make_record(
        flow, sender, topic.consumer, envelope, subject=subject_of(body), message_count=1,
        row_count=rows_in(body), byte_count=len(payload), digest=payload_digest(payload),
        topic=at.topic, partition=at.partition, first_offset=at.offset, last_offset=at.offset,
    )


def make_record(flow: Flow, sender: Component, receiver: Component, envelope: Envelope, *, subject: str,
                message_count: int, row_count: int, byte_count: int, digest: str, topic: str = "",
                partition: int = NO_OFFSET, first_offset: int = NO_OFFSET,
                last_offset: int = NO_OFFSET) -> AuditRecord:
    return AuditRecord(
        record_id=new_id(), flow=flow, outcome=Outcome.ALLOWED,
        from_component=sender, from_plane=PLANE_OF[sender],
        to_component=receiver, to_plane=PLANE_OF[receiver],
        principal=envelope.principal, workspace=envelope.workspace, subject=subject,
        message_count=message_count, row_count=row_count, byte_count=byte_count, digest=digest,
        topic=topic, partition=partition, first_offset=first_offset, last_offset=last_offset,
        correlation_id=envelope.correlation_id, causation_id=envelope.event_id,
        occurred_at=datetime.now(UTC),
    )
