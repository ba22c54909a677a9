"""The Kafka bus: the only module that imports aiokafka.

Producers are idempotent with acks=all; consumers read committed data only and never auto-commit, so
offsets move only inside a transaction together with the outputs they caused (DESIGN: "Exactly once").
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    AuthenticationFailedError,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    SaslAuthenticationFailed,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)

from actors.bus import Outgoing, Record, StartAt
from actors.settings import KafkaCredentials
from events.data import Coordinates
from events.errors import BrokerUnavailable, MessageTooLarge, PermissionDenied, Unavailable

# The broker refused this principal (SASL login or ACL): retrying will not help.
_REFUSED = (AuthenticationFailedError, SaslAuthenticationFailed, TopicAuthorizationFailedError,
            GroupAuthorizationFailedError, TransactionalIdAuthorizationFailed, ClusterAuthorizationFailedError)

# How long a new topic may take to show up in a consumer's metadata.
_METADATA_MAX_AGE_MS = 3_000
# How much one fetch may bring per partition (aiokafka's default is 1 MiB, one or two write messages): a
# store commits once per poll, and each commit costs fsyncs, so a backlog is taken in few large batches.
# It also bounds what a consumer buffers per partition while its component is busy.
_FETCH_BYTES_PER_PARTITION = 16 * 1024 * 1024
# How long a producer waits before retrying a retriable error (aiokafka's default is 100 ms). The common one
# is CONCURRENT_TRANSACTIONS: a transaction's first partition registered while the broker still writes the
# previous one's markers. Kafka's Java producer retries that after 20 ms; at 100 ms every tenth read
# through the store took 100 ms longer.
_RETRY_BACKOFF_MS = 20
# How long closing a broken producer client may take before it is left to the garbage collector.
_CLOSE_BROKEN_S = 5.0
# The producers' max_request_size unless told otherwise: the broker's default message.max.bytes is a little
# more (1 MiB plus the batch header), so a message this client accepts the broker accepts too.
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024


class KafkaTransaction:
    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._announced: list[str] = []

    async def send_all(self, messages: Sequence[Outgoing]) -> list[Coordinates]:
        self._register_announced()
        return await _send_all(self._producer, messages)

    def announce(self, topics: Sequence[str]) -> None:
        self._announced.extend(topics)

    def _register_announced(self) -> None:
        """Add the announced topics' partitions to the transaction now, before this send adds its own (with
        cached metadata `send` adds them without yielding): the sender then registers all of them in one
        AddPartitionsToTxn request. A partition added and not written to just gets a commit marker. Without
        metadata for a topic yet, its first send registers it as usual."""
        manager, cluster = self._producer._txn_manager, self._producer.client.cluster
        for topic in self._announced:
            for partition in cluster.partitions_for_topic(topic) or ():
                manager.maybe_add_partition_to_txn(TopicPartition(topic, partition))
        self._announced.clear()

    async def commit_offsets(self, offsets: Mapping[tuple[str, int], int], group_id: str) -> None:
        if offsets:
            tps = {TopicPartition(t, p): o for (t, p), o in offsets.items()}
            await self._producer.send_offsets_to_transaction(tps, group_id)


class KafkaTransactionalProducer:
    """A transactional producer that outlives its client: aiokafka reconnects by itself after a broker
    outage, but a client in a fatal state (fenced, or its transaction lost with the broker) stays unusable,
    so the next transaction gets a new client with the same transactional id (whose initialisation aborts
    whatever the old one left open)."""

    def __init__(self, producer: AIOKafkaProducer, renew: Callable[[], Awaitable[AIOKafkaProducer]]) -> None:
        self._producer = producer
        self._renew = renew
        # aiokafka allows one open transaction per producer; concurrent tasks take turns.
        self._lock = asyncio.Lock()
        self._closed = False
        self._renew_before_next = False

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[KafkaTransaction]:
        async with self._lock:
            if self._renew_before_next or _in_fatal_state(self._producer):
                await self._replace_client()
            try:
                async with self._producer.transaction():
                    yield KafkaTransaction(self._producer)
            except MessageTooLarge as exc:
                # Refused by the client before it was queued, the transaction just aborts; refused by the
                # broker, the client has counted a sequence number for it (see below): renew.
                self._renew_before_next = exc.by_broker
                raise
            except KafkaError as exc:
                # aiokafka keeps counting its idempotence sequence numbers past an aborted transaction (the
                # Java client bumps the epoch instead), so after a broker restart every later send would be
                # refused as out of order: the next transaction starts on a fresh client.
                self._renew_before_next = True
                if isinstance(exc, KafkaConnectionError | KafkaTimeoutError) or exc.retriable:
                    raise BrokerUnavailable(f"Kafka did not complete the transaction: {exc!r}") from exc
                raise

    async def _replace_client(self) -> None:
        old = self._producer
        structlog.get_logger().warning("transactional_producer_renewed",
                                       transactional_id=old._txn_manager.transactional_id)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(old.stop(), _CLOSE_BROKEN_S)
        self._producer = await self._renew()
        self._renew_before_next = False

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._producer.stop()


class KafkaConsumer:
    def __init__(self, consumer: AIOKafkaConsumer, group_id: str | None) -> None:
        self._consumer = consumer
        self.group_id = group_id
        self._closed = False

    async def poll(self, timeout_ms: int, max_records: int) -> list[Record]:
        if not self._consumer.subscription() and not self._consumer.assignment():
            # aiokafka would wait for an assignment forever; a poll must return within its timeout.
            await asyncio.sleep(timeout_ms / 1000)
            return []
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        return [
            Record(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp)
            for records in batches.values()
            for r in records
        ]

    async def subscribe(self, topics: Sequence[str]) -> None:
        self._consumer.subscribe(topics=list(topics))

    async def rewind(self, positions: Mapping[tuple[str, int], int]) -> None:
        for (topic, partition), offset in positions.items():
            self._consumer.seek(TopicPartition(topic, partition), offset)

    async def positions(self) -> dict[tuple[str, int], int]:
        return {(tp.topic, tp.partition): await self._consumer.position(tp) for tp in self._consumer.assignment()}

    async def end_offsets(self) -> dict[tuple[str, int], int]:
        # For a read_committed consumer the broker answers with the last stable offset.
        ends = await self._consumer.end_offsets(list(self._consumer.assignment()))
        return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._consumer.stop()


class KafkaBus:
    """Creates clients for one broker (or cluster); `close()` stops the ones it keeps itself."""

    def __init__(self, bootstrap_servers: str, client_id: str = "featureplane",
                 credentials: KafkaCredentials | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self._bootstrap = bootstrap_servers
        self._client_id = client_id
        self._max_message_bytes = max_message_bytes
        self._security = security_options(credentials)
        self._plain: AIOKafkaProducer | None = None

    async def ensure_topics(self, topics: Mapping[str, int]) -> None:
        # Under ACLs a plane may not create what it may not use: the operator creates the platform's topics
        # before the components start, and a per-topic refusal in the answer is not raised here.
        admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap, client_id=self._client_id,
                                    **self._security)
        await _start(admin)
        try:
            existing = set(await admin.list_topics())
            missing = [NewTopic(name, n, 1) for name, n in topics.items() if name not in existing]
            if missing:
                # Another component may create one first: that is what we wanted.
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics(missing)
        finally:
            await admin.close()

    async def group_consumer(self, topics: Sequence[str], group_id: str) -> KafkaConsumer:
        consumer = AIOKafkaConsumer(
            *topics, **self._consumer_options(), group_id=group_id, auto_offset_reset="earliest",
        )
        await _start(consumer)
        return KafkaConsumer(consumer, group_id)

    async def reader(self, topics: Sequence[str], start: StartAt,
                     positions: Mapping[tuple[str, int], int] | None = None) -> KafkaConsumer:
        # Without a group, a subscription is assigned every partition of its topics, new ones included.
        consumer = AIOKafkaConsumer(*topics, **self._consumer_options(), group_id=None, auto_offset_reset=start)
        await _start(consumer)
        await _wait_assigned(consumer, set(topics))
        for (topic, partition), offset in (positions or {}).items():
            consumer.seek(TopicPartition(topic, partition), offset)
        for tp in consumer.assignment():  # resolve positions now, so nothing sent after this call is missed
            await consumer.position(tp)
        return KafkaConsumer(consumer, None)

    async def transactional_producer(self, transactional_id: str) -> KafkaTransactionalProducer:
        """A producer whose transactional id is the caller's stable name for itself (component and
        instance): the same on every restart, so starting it fences the previous incarnation."""
        async def started() -> AIOKafkaProducer:
            producer = AIOKafkaProducer(**self._producer_options(), transactional_id=transactional_id)
            await _start(producer)
            return producer

        return KafkaTransactionalProducer(await started(), started)

    async def send(self, messages: Sequence[Outgoing]) -> list[Coordinates]:
        if self._plain is None:
            self._plain = AIOKafkaProducer(**self._producer_options())
            await _start(self._plain)
        return await _send_all(self._plain, messages)

    async def close(self) -> None:
        if self._plain is not None:
            plain, self._plain = self._plain, None
            await plain.stop()

    def _producer_options(self) -> dict[str, Any]:
        return {
            "bootstrap_servers": self._bootstrap, "client_id": self._client_id,
            # No linger: `_send_all` queues a whole transaction's messages before the sender runs, and while a
            # request is in flight the next messages batch up anyway; lingering only delayed every send.
            "enable_idempotence": True, "acks": "all", "linger_ms": 0,
            "retry_backoff_ms": _RETRY_BACKOFF_MS,
            "max_request_size": self._max_message_bytes, **self._security,
        }

    def _consumer_options(self) -> dict[str, Any]:
        return {
            "bootstrap_servers": self._bootstrap, "client_id": self._client_id,
            "isolation_level": "read_committed", "enable_auto_commit": False,
            "metadata_max_age_ms": _METADATA_MAX_AGE_MS, "fetch_max_wait_ms": 50,
            "max_partition_fetch_bytes": _FETCH_BYTES_PER_PARTITION, **self._security,
        }


def security_options(credentials: KafkaCredentials | None) -> dict[str, Any]:
    """aiokafka's keyword arguments for a login (none without one): also for the plain aiokafka clients
    that tests, benchmarks and examples build themselves, as a customer's application would."""
    if credentials is None:
        return {}
    return {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": credentials.mechanism,
            "sasl_plain_username": credentials.username, "sasl_plain_password": credentials.password}


async def _send_all(producer: AIOKafkaProducer, messages: Sequence[Outgoing]) -> list[Coordinates]:
    # Queue every message first, then wait: the batch goes out in as few requests as possible.
    futures = []
    for m in messages:
        try:
            futures.append(await producer.send(m.topic, value=m.value, key=m.key))
        except MessageSizeTooLargeError as exc:  # checked by the client before anything is queued
            raise MessageTooLarge(f"a {len(m.value)}-byte message for topic {m.topic} is larger than "
                                  f"Kafka takes: {exc}") from exc
    try:
        metadata = await asyncio.gather(*futures)
    except MessageSizeTooLargeError as exc:  # the broker's own limit is lower than the client's
        raise MessageTooLarge(f"the broker refused a message as too large: {exc}", by_broker=True) from exc
    return [Coordinates(md.topic, md.partition, md.offset) for md in metadata]


async def _wait_assigned(consumer: AIOKafkaConsumer, topics: set[str], timeout_s: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while {tp.topic for tp in consumer.assignment()} != topics:
        if asyncio.get_running_loop().time() > deadline:
            await consumer.stop()
            raise Unavailable(f"topics {sorted(topics)} got no partitions within {timeout_s}s; do they exist?")
        await asyncio.sleep(0.05)


def _in_fatal_state(producer: AIOKafkaProducer) -> bool:
    # aiokafka exposes no public accessor for this; its transaction manager is the only place it is kept.
    manager = producer._txn_manager
    return manager is not None and bool(manager.is_fatal_error())


async def _start(client: Any) -> None:
    try:
        await client.start()
    except _REFUSED as exc:
        await _close_quietly(client)
        raise PermissionDenied(f"the Kafka broker refused this client: {exc}") from exc
    except (KafkaConnectionError, KafkaError) as exc:
        await _close_quietly(client)
        raise BrokerUnavailable(f"Kafka is not reachable: {exc}") from exc


async def _close_quietly(client: Any) -> None:
    stop = getattr(client, "stop", None) or client.close
    with contextlib.suppress(KafkaError, OSError):
        await stop()
