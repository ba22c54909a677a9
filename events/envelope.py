"""The envelope every featureplane message travels in."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from events.planes import PLANE_OF, Component, Plane

Body = TypeVar("Body", covariant=True)
B = TypeVar("B")

SYSTEM_PRINCIPAL = "system"


@dataclass(frozen=True, slots=True)
class Envelope:
    event_id: str
    type: str
    schema_version: int
    occurred_at: datetime
    producer: Component
    plane: Plane
    correlation_id: str
    causation_id: str
    workspace: str
    principal: str


@dataclass(frozen=True, slots=True)
class Message(Generic[Body]):
    envelope: Envelope
    body: Body


def new_id() -> str:
    return uuid.uuid4().hex


def new_message(
    body: B,
    *,
    type_tag: str,
    schema_version: int,
    producer: Component,
    workspace: str,
    caused_by: Envelope | None = None,
    correlation_id: str | None = None,
    principal: str | None = None,
    occurred_at: datetime | None = None,
) -> Message[B]:
    """A message about `body`; correlation and principal follow from the message that caused it."""
    event_id = new_id()
    if correlation_id is None:
        correlation_id = caused_by.correlation_id if caused_by else event_id
    if principal is None:
        principal = caused_by.principal if caused_by else SYSTEM_PRINCIPAL
    envelope = Envelope(
        event_id=event_id,
        type=type_tag,
        schema_version=schema_version,
        occurred_at=occurred_at or datetime.now(UTC),
        producer=producer,
        plane=PLANE_OF[producer],
        correlation_id=correlation_id,
        causation_id=caused_by.event_id if caused_by else "",
        workspace=workspace,
        principal=principal,
    )
    return Message(envelope, body)
