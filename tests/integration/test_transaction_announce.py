"""A Kafka transaction that announces a topic it will send to later (the audit topic) registers it up front:
it must commit whether or not it then writes there, and leave that topic readable by read_committed
consumers (an open or unmarked partition would hold their last stable offset back forever)."""

from __future__ import annotations

import uuid

import pytest

from actors.bus import Outgoing
from actors.kafka_bus import KafkaBus
from tests.integration.helpers import broker_users, read_topic

pytestmark = pytest.mark.integration


async def test_an_announced_topic_commits_written_or_not_and_stays_readable(kafka_bootstrap: str) -> None:
    data, audit = f"data-{uuid.uuid4().hex[:8]}", f"audit-{uuid.uuid4().hex[:8]}"
    bus = KafkaBus(kafka_bootstrap, client_id="announce-test", credentials=broker_users(kafka_bootstrap).operator)
    await bus.ensure_topics({data: 1, audit: 1})
    producer = await bus.transactional_producer(f"announce-test-{uuid.uuid4().hex[:8]}")
    try:
        async with producer.transaction() as txn:  # metadata for both topics, as a running component has it
            await txn.send_all([Outgoing(data, b"d0"), Outgoing(audit, b"a0")])
        async with producer.transaction() as txn:
            txn.announce([audit])
            await txn.send_all([Outgoing(data, b"d1")])
            await txn.send_all([Outgoing(audit, b"a1")])
        async with producer.transaction() as txn:  # announced, never written
            txn.announce([audit])
            await txn.send_all([Outgoing(data, b"d2")])
        async with producer.transaction() as txn:
            await txn.send_all([Outgoing(audit, b"a2")])
    finally:
        await producer.close()
        await bus.close()
    assert [r.value for r in await read_topic(kafka_bootstrap, data)] == [b"d0", b"d1", b"d2"]
    assert [r.value for r in await read_topic(kafka_bootstrap, audit)] == [b"a0", b"a1", b"a2"]
