"""The transactional producer renews its aiokafka client after a failed transaction (same transactional id)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, OutOfOrderSequenceNumber

from actors.kafka_bus import KafkaTransactionalProducer
from events.errors import BrokerUnavailable


class FakeManager:
    transactional_id = "t.rift.rift-0"

    def __init__(self) -> None:
        self.fatal = False

    def is_fatal_error(self) -> bool:
        return self.fatal


class FakeClient:
    """Stands in for AIOKafkaProducer: counts transactions and whether it was stopped."""

    def __init__(self, number: int) -> None:
        self.number = number
        self._txn_manager = FakeManager()
        self.transactions = 0
        self.stopped = False

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        self.transactions += 1
        yield

    async def stop(self) -> None:
        self.stopped = True


def _producer() -> tuple[KafkaTransactionalProducer, list[FakeClient]]:
    clients = [FakeClient(0)]

    async def renew() -> Any:
        clients.append(FakeClient(len(clients)))
        return clients[-1]

    return KafkaTransactionalProducer(clients[0], renew), clients  # type: ignore[arg-type]


async def test_a_transaction_refused_by_the_broker_renews_the_client_for_the_next_one() -> None:
    producer, clients = _producer()
    with pytest.raises(OutOfOrderSequenceNumber):
        async with producer.transaction():
            raise OutOfOrderSequenceNumber()
    async with producer.transaction():
        pass
    assert len(clients) == 2
    assert clients[0].stopped
    assert clients[1].transactions == 1


async def test_a_lost_connection_is_broker_unavailable_and_a_healthy_client_is_kept() -> None:
    producer, clients = _producer()
    async with producer.transaction():
        pass
    with pytest.raises(BrokerUnavailable):
        async with producer.transaction():
            raise KafkaConnectionError()
    async with producer.transaction():
        pass
    assert [c.transactions for c in clients] == [2, 1]


async def test_a_client_in_a_fatal_state_is_replaced() -> None:
    producer, clients = _producer()
    clients[0]._txn_manager.fatal = True
    async with producer.transaction():
        pass
    assert [c.transactions for c in clients] == [0, 1]


async def test_a_policy_failure_keeps_the_client() -> None:
    producer, clients = _producer()
    with pytest.raises(ValueError, match="policy"):
        async with producer.transaction():
            raise ValueError("policy")
    async with producer.transaction():
        pass
    assert len(clients) == 1
