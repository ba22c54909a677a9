"""Group commit: concurrent callers share transactions, each gets its own refusals, and an aborted
transaction fails exactly its own callers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from actors.auditing import make_record
from actors.group_commit import GroupCommit
from actors.memory_bus import MemoryBus, MemoryTransaction
from actors.outbox import Outbound
from events.audit import AuditRecord
from events.codec import CODEC
from events.data import SourceRange, WriteOnlineRows
from events.flows import Flow
from events.planes import Component
from events.topics import AUDIT, CONTROL_EVENTS, TopicNames
from tests.unit.fixtures import envelope_of

NAMES = TopicNames("t")


class SlowProducer:
    """A MemoryBus producer whose commits take a while, as a broker's do: callers pile up meanwhile."""

    def __init__(self, bus: MemoryBus) -> None:
        self.transactions = 0
        self._inner = bus

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[MemoryTransaction]:
        producer = await self._inner.transactional_producer("slow")
        self.transactions += 1
        async with producer.transaction() as txn:
            yield txn
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        return None


def audit(n: int) -> AuditRecord:
    return make_record(Flow.F4, Component.FEATURE_SERVER, Component.CUSTOMER_APP, envelope_of(), subject=f"s{n}",
                       message_count=1, row_count=n, byte_count=1, digest="d")


def rows_to_control_plane() -> Outbound:
    """Feature rows on a control topic: a flow the feature server may never use."""
    body = WriteOnlineRows("v", (), SourceRange("s", 0, 0, 0))
    return Outbound(CONTROL_EVENTS, CODEC.message(body, producer=Component.FEATURE_SERVER, workspace="prod"))


async def test_concurrent_callers_share_transactions_and_every_record_is_sent_once() -> None:
    bus = MemoryBus()
    producer = SlowProducer(bus)
    commits = GroupCommit(producer, CODEC, NAMES, Component.FEATURE_SERVER)
    results = await asyncio.gather(*(commits.publish([], [audit(n)]) for n in range(50)))
    assert results == [[]] * 50
    assert producer.transactions < 10  # 50 callers, a handful of transactions
    sent = sorted(CODEC.decode(r.value).body.row_count for r in bus.records(NAMES.name(AUDIT)))
    assert sent == list(range(50))


async def test_each_caller_gets_its_own_refusals() -> None:
    bus = MemoryBus()
    commits = GroupCommit(SlowProducer(bus), CODEC, NAMES, Component.FEATURE_SERVER)
    refused, fine = await asyncio.gather(commits.publish([rows_to_control_plane()]), commits.publish([], [audit(1)]))
    assert len(refused) == 1  # only the caller that sent on the forbidden flow is told
    assert fine == []
    assert not bus.records(NAMES.name(CONTROL_EVENTS))


async def test_an_aborted_transaction_fails_its_callers_and_the_next_group_goes_on() -> None:
    bus = MemoryBus()
    bus.fail_on_commit.extend([True, False])
    commits = GroupCommit(SlowProducer(bus), CODEC, NAMES, Component.FEATURE_SERVER)
    first = asyncio.ensure_future(commits.publish([], [audit(1)]))
    await asyncio.sleep(0)  # the first group starts with the first caller alone
    second = asyncio.ensure_future(commits.publish([], [audit(2)]))
    with pytest.raises(ConnectionError, match="injected"):
        await first
    assert await second == []
    assert [CODEC.decode(r.value).body.row_count for r in bus.records(NAMES.name(AUDIT))] == [2]


async def test_audit_records_alone_are_sent_without_a_transaction_when_a_plain_send_is_given() -> None:
    bus = MemoryBus()
    producer = SlowProducer(bus)
    commits = GroupCommit(producer, CODEC, NAMES, Component.FEATURE_SERVER, bus.send)
    assert await asyncio.gather(*(commits.publish([], [audit(n)]) for n in range(5))) == [[]] * 5
    assert producer.transactions == 0
    assert sorted(CODEC.decode(r.value).body.row_count for r in bus.records(NAMES.name(AUDIT))) == list(range(5))
    # data messages still go in a transaction with their audit records
    refused = await commits.publish([rows_to_control_plane()])
    assert len(refused) == 1
    assert producer.transactions == 1
