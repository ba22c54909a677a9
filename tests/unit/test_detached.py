"""Publishing from request paths while the broker is away: a deadline, never a hang, nothing lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from actors.auditing import make_record
from actors.detached import DetachedPublisher
from actors.group_commit import GroupCommit
from actors.memory_bus import MemoryBus, MemoryProducer, MemoryTransaction
from actors.outbox import Outbound
from events.audit import AuditRecord
from events.codec import CODEC
from events.data import Lookup, ReadOnlineRows
from events.envelope import new_message
from events.errors import BrokerUnavailable
from events.flows import Flow
from events.planes import Component
from events.topics import AUDIT, ONLINE_READS, TopicNames
from gateway.errors import response_for

NAMES = TopicNames("t")
TIMEOUT_S = 0.05


class AwayBroker:
    """A producer whose commits wait until the broker is back (as aiokafka's do)."""

    def __init__(self, bus: MemoryBus) -> None:
        self.back = asyncio.Event()
        self._inner = MemoryProducer(bus.log, bus.fail_on_commit)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[MemoryTransaction]:
        async with self._inner.transaction() as txn:
            yield txn
            await self.back.wait()

    async def close(self) -> None:
        return None


def commits_of(producer: AwayBroker) -> Callable[[], GroupCommit]:
    """Shared transactions over `producer` (audit records too: no plain send, so they wait for the broker)."""
    commits = GroupCommit(producer, CODEC, NAMES, Component.FEATURE_SERVER)
    return lambda: commits


def _f1(n: int) -> AuditRecord:
    envelope = new_message(None, type_tag="GetFeaturesRequest", schema_version=1, producer=Component.CUSTOMER_APP,
                           workspace="prod", principal="model").envelope
    return make_record(Flow.F1, Component.CUSTOMER_APP, Component.FEATURE_SERVER, envelope, subject=f"s{n}",
                       message_count=1, row_count=1, byte_count=10, digest="d")


def _audited(bus: MemoryBus) -> list[str]:
    return [CODEC.decode(r.value).body.subject for r in bus.records(NAMES.name(AUDIT))]


async def test_a_request_gets_broker_unavailable_at_the_deadline_and_its_message_follows_later() -> None:
    bus = MemoryBus()
    producer = AwayBroker(bus)
    sends = DetachedPublisher(commits_of(producer), Component.FEATURE_SERVER, TIMEOUT_S)
    read = CODEC.message(ReadOnlineRows("r1", (Lookup("v", ("u1",), None),), "fs-0"),
                         producer=Component.FEATURE_SERVER, workspace="prod")
    with pytest.raises(BrokerUnavailable, match="Kafka"):
        await sends.publish([Outbound(ONLINE_READS, read)], [_f1(1)])
    assert bus.records(NAMES.name(ONLINE_READS)) == []
    producer.back.set()
    await sends.close()
    assert len(bus.records(NAMES.name(ONLINE_READS))) == 1  # with its audit records, in one transaction
    assert "s1" in _audited(bus)


def test_the_gateway_answers_503_when_kafka_is_unreachable() -> None:
    response = response_for(BrokerUnavailable("Kafka did not take the message within 3s"))
    assert response.status == 503
    assert response.text is not None
    assert '"errorType": "UNAVAILABLE"' in response.text
