"""The local broker (deploy/kafka.py) supports what featureplane relies on, through aiokafka.

Every plane writes through idempotent or transactional producers and consumes read_committed,
so these tests pin that the broker version we ship and aiokafka agree on those protocols. They log in as
the operator (a super user: any topic, group and transactional id); the broker, like `featureplane up`'s,
takes no client without a login, and a plane's login only where an ACL grants it.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

from deploy.acls import PLANE_USERS
from events.planes import Plane
from tests.integration.helpers import OPERATOR, client_options

pytestmark = pytest.mark.integration


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def _create_topics(bootstrap: str, *names: str) -> None:
    admin = AIOKafkaAdminClient(**client_options(bootstrap, OPERATOR))
    await admin.start()
    try:
        resp = await admin.create_topics([NewTopic(n, num_partitions=1, replication_factor=1) for n in names])
    finally:
        await admin.close()
    errors = {t[0]: t[1] for t in resp.topic_errors}
    assert errors == dict.fromkeys(names, 0), f"create_topics failed: {resp}"


async def _read_all(bootstrap: str, topic: str, isolation: str, expected: int) -> list[bytes]:
    """Values of partition 0 from the start: waits for `expected`, then polls once more so
    that anything extra (e.g. aborted records leaking through) shows up and fails the test."""
    consumer = AIOKafkaConsumer(
        **client_options(bootstrap, OPERATOR), isolation_level=isolation, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        values: list[bytes] = []
        deadline = asyncio.get_running_loop().time() + 20
        while len(values) < expected and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(tp, timeout_ms=500)
            values += [r.value for r in batch.get(tp, [])]
        batch = await consumer.getmany(tp, timeout_ms=1000)
        values += [r.value for r in batch.get(tp, [])]
        return values
    finally:
        await consumer.stop()


async def _committed(bootstrap: str, group: str, tp: TopicPartition) -> int | None:
    """The group's committed offset as seen by a fresh consumer (not the one that processed)."""
    consumer = AIOKafkaConsumer(**client_options(bootstrap, OPERATOR), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        offset: int | None = await consumer.committed(tp)
        return offset
    finally:
        await consumer.stop()


async def test_idempotent_producer_writes_each_message_once_in_order(kafka_bootstrap: str) -> None:
    topic = _name("idem")
    await _create_topics(kafka_bootstrap, topic)
    producer = AIOKafkaProducer(**client_options(kafka_bootstrap, OPERATOR), enable_idempotence=True, acks="all")
    await producer.start()
    try:
        # Many sends in flight at once: the broker must accept each sequence number exactly once.
        futures = [await producer.send(topic, f"m{i}".encode(), partition=0) for i in range(50)]
        metadata = await asyncio.gather(*futures)
        last = await producer.send_and_wait(topic, b"last", partition=0)
        txn_manager = producer._txn_manager  # aiokafka keeps the producer id there
        assert txn_manager is not None
        assert txn_manager.producer_id >= 0, "broker did not assign a producer id (InitProducerId)"
    finally:
        await producer.stop()
    assert [m.offset for m in metadata] == list(range(50))
    assert last.offset == 50
    values = await _read_all(kafka_bootstrap, topic, "read_uncommitted", 51)
    assert values == [f"m{i}".encode() for i in range(50)] + [b"last"]


async def test_transactions_commit_and_abort(kafka_bootstrap: str) -> None:
    topic = _name("txn")
    await _create_topics(kafka_bootstrap, topic)
    producer = AIOKafkaProducer(**client_options(kafka_bootstrap, OPERATOR), transactional_id=_name("txn-id"))
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(topic, b"committed-1", partition=0)
            await producer.send_and_wait(topic, b"committed-2", partition=0)
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"aborted-1", partition=0)
        await producer.send_and_wait(topic, b"aborted-2", partition=0)
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send_and_wait(topic, b"committed-3", partition=0)
    finally:
        await producer.stop()

    committed = await _read_all(kafka_bootstrap, topic, "read_committed", 3)
    assert committed == [b"committed-1", b"committed-2", b"committed-3"]
    # The aborted records really reached the log; only read_committed hides them.
    everything = await _read_all(kafka_bootstrap, topic, "read_uncommitted", 5)
    assert everything == [b"committed-1", b"committed-2", b"aborted-1", b"aborted-2", b"committed-3"]


async def test_consume_transform_produce_commits_offsets_with_the_output(kafka_bootstrap: str) -> None:
    source, sink, group = _name("ctp-in"), _name("ctp-out"), _name("ctp-group")
    await _create_topics(kafka_bootstrap, source, sink)
    tp = TopicPartition(source, 0)
    inputs = [f"event-{i}".encode() for i in range(5)]

    producer = AIOKafkaProducer(**client_options(kafka_bootstrap, OPERATOR), transactional_id=_name("ctp-id"))
    consumer = AIOKafkaConsumer(
        source,
        **client_options(kafka_bootstrap, OPERATOR),
        group_id=group,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
    )
    await producer.start()
    await consumer.start()
    try:
        async with producer.transaction():
            for value in inputs:
                await producer.send_and_wait(source, value, partition=0)

        async def fetch(n: int) -> list[tuple[int, bytes]]:
            got: list[tuple[int, bytes]] = []
            deadline = asyncio.get_running_loop().time() + 30
            while len(got) < n and asyncio.get_running_loop().time() < deadline:
                batch = await consumer.getmany(timeout_ms=500, max_records=n - len(got))
                got += [(r.offset, r.value) for r in batch.get(tp, [])]
            assert len(got) == n, f"consumed {got}"
            return got

        async def process(records: list[tuple[int, bytes]], commit: bool) -> None:
            await producer.begin_transaction()
            for _, value in records:
                await producer.send_and_wait(sink, value.upper(), partition=0)
            await producer.send_offsets_to_transaction({tp: records[-1][0] + 1}, group)
            await (producer.commit_transaction() if commit else producer.abort_transaction())

        first = await fetch(3)
        assert [v for _, v in first] == inputs[:3]
        async with producer.transaction():  # the context-manager form, as the actors use it
            for _, value in first:
                await producer.send_and_wait(sink, value.upper(), partition=0)
            await producer.send_offsets_to_transaction({tp: first[-1][0] + 1}, group)
        first_next = first[-1][0] + 1

        rest = await fetch(2)
        await process(rest, commit=False)  # a crash mid-batch: neither output nor offsets stick
        assert await _committed(kafka_bootstrap, group, tp) == first_next
        assert await _read_all(kafka_bootstrap, sink, "read_committed", 3) == [v.upper() for v in inputs[:3]]

        consumer.seek(tp, first_next)  # what a restarted consumer would do from the committed offset
        retried = await fetch(2)
        assert retried == rest
        await process(retried, commit=True)
    finally:
        await consumer.stop()
        await producer.stop()

    # The input records are offsets 0-4 (offset 5 is the commit marker of their transaction).
    assert await _committed(kafka_bootstrap, group, tp) == rest[-1][0] + 1 == 5
    assert await _read_all(kafka_bootstrap, sink, "read_committed", 5) == [v.upper() for v in inputs]
    assert len(await _read_all(kafka_bootstrap, sink, "read_uncommitted", 7)) == 7


async def test_a_client_without_a_login_gets_no_connection(kafka_bootstrap: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, request_timeout_ms=5000)
    with pytest.raises(KafkaConnectionError):
        await producer.start()
    await producer.stop()


async def test_a_planes_login_reaches_no_topic_without_an_acl(kafka_bootstrap: str) -> None:
    topic = _name("no-acl")
    await _create_topics(kafka_bootstrap, topic)
    # The control plane's principal has no grant on anything outside its deployments' control topics.
    producer = AIOKafkaProducer(**client_options(kafka_bootstrap, PLANE_USERS[Plane.CONTROL]))
    await producer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(topic, b"refused")
    finally:
        await producer.stop()
    assert await _read_all(kafka_bootstrap, topic, "read_uncommitted", 0) == []
