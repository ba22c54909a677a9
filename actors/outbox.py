"""Sending messages together with their audit records, inside one open transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from actors.auditing import audit_denied, audit_sent, outbound_flow
from actors.bus import Outgoing, Transaction
from events.audit import AuditRecord
from events.codec import Codec
from events.envelope import Message
from events.errors import FlowDenied
from events.planes import Component
from events.topics import AUDIT, Topic, TopicNames


@dataclass(frozen=True, slots=True)
class Outbound:
    topic: Topic
    message: Message[Any]


async def publish(txn: Transaction, codec: Codec, names: TopicNames, sender: Component,
                  outputs: Sequence[Outbound], extra_audits: Sequence[AuditRecord] = ()) -> list[FlowDenied]:
    """Send `outputs`, then one audit record per cross-plane output plus `extra_audits`.

    The outputs' coordinates are known before their audit records are written, so each record names
    the Kafka message it audits; both commit or abort with the transaction. An output on a flow its
    sender may not use is refused here: it is not sent, a `denied` audit record is, and the refusal is
    returned (the rest goes on).
    """
    return (await publish_groups(txn, codec, names, sender, [(outputs, extra_audits)]))[0]


async def publish_groups(txn: Transaction, codec: Codec, names: TopicNames, sender: Component,
                         groups: Sequence[tuple[Sequence[Outbound], Sequence[AuditRecord]]]) -> list[list[FlowDenied]]:
    """`publish` for several callers' outputs at once, with two sends in all (the outputs, then every
    audit record) instead of two per caller; each caller gets its own refusals back."""
    allowed: list[tuple[Outbound, bytes]] = []
    audits: list[AuditRecord] = []
    refused: list[list[FlowDenied]] = []
    for outputs, _ in groups:
        refused.append([])
        for output in outputs:
            payload = codec.encode(output.message)
            try:
                outbound_flow(sender, output.topic, output.message.body)
            except FlowDenied as denied:
                refused[-1].append(denied)
                audits.append(audit_denied(sender, output.topic, output.message.envelope, output.message.body,
                                           payload, denied))
                structlog.get_logger().error("flow_denied", sender=str(sender), topic=output.topic.base,
                                             flow=denied.flow, reason=denied.message)
                continue
            allowed.append((output, payload))
    coords = await txn.send_all([Outgoing(names.name(o.topic), p, o.topic.key(o.message)) for o, p in allowed])
    audits = [
        a for (o, p), c in zip(allowed, coords, strict=True)
        if (a := audit_sent(sender, o.topic, o.message.envelope, o.message.body, p, c)) is not None
    ] + audits
    audits.extend(a for _, extra in groups for a in extra)
    if audits:
        await txn.send_all([audit_message(codec, names, sender, a) for a in audits])
    return refused


def audit_message(codec: Codec, names: TopicNames, sender: Component, record: AuditRecord) -> Outgoing:
    message = codec.message(record, producer=sender, workspace=record.workspace,
                            correlation_id=record.correlation_id, principal=record.principal)
    return Outgoing(names.name(AUDIT), codec.encode(message), None)
