"""Sending messages together with their audit records, inside one open transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from actors.auditing import audit_sent
from actors.bus import Outgoing, Transaction
from events.audit import AuditRecord
from events.codec import Codec
from events.data import Coordinates
from events.envelope import Message
from events.planes import Component
from events.topics import AUDIT, Topic, TopicNames


@dataclass(frozen=True, slots=True)
class Outbound:
    topic: Topic
    message: Message[Any]


async def publish(txn: Transaction, codec: Codec, names: TopicNames, sender: Component,
                  outputs: Sequence[Outbound], extra_audits: Sequence[AuditRecord] = ()) -> list[Coordinates]:
    """Send `outputs`, then one audit record per cross-plane output plus `extra_audits`.

    The outputs' coordinates are known before their audit records are written, so each record names
    the Kafka message it audits; both commit or abort with the transaction.
    """
    payloads = [codec.encode(o.message) for o in outputs]
    coords = await txn.send_all([
        Outgoing(names.name(o.topic), p, o.topic.key(o.message)) for o, p in zip(outputs, payloads, strict=True)
    ])
    audits = [
        a for o, p, c in zip(outputs, payloads, coords, strict=True)
        if (a := audit_sent(sender, o.topic, o.message.envelope, o.message.body, p, c)) is not None
    ]
    audits.extend(extra_audits)
    if audits:
        await txn.send_all([_audit_message(codec, names, sender, a) for a in audits])
    return coords


def _audit_message(codec: Codec, names: TopicNames, sender: Component, record: AuditRecord) -> Outgoing:
    message = codec.message(record, producer=sender, workspace=record.workspace,
                            correlation_id=record.correlation_id, principal=record.principal)
    return Outgoing(names.name(AUDIT), codec.encode(message), None)
