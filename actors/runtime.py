"""The runtime every consuming component runs: consume → decode → policy → one Kafka transaction.

For each batch the runtime sends the policy's outputs, **their audit records** and the consumed offsets
in a single transaction, so there is no cross-plane flow without an audit record and no audit record
without a flow. If anything fails the transaction aborts, the consumer rewinds to the batch's first
offsets and the batch is processed again; stores skip what they already applied. Only an output larger
than Kafka takes is not retried as it is: the batch's records are then processed one per transaction, and
the ones whose outputs are still too large go to the dead-letter topic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from actors.bus import Bus, Consumer, Record, TransactionalProducer
from actors.outbox import Outbound, publish
from events.audit import AuditRecord
from events.codec import CODEC, Codec
from events.data import RecordDeadLettered, SourceRange
from events.envelope import Message
from events.errors import DecodeError, FeatureplaneError, MessageTooLarge
from events.planes import Component
from events.shape import shape_problem
from events.topics import AUDIT, DEAD_LETTER, PLATFORM_TOPICS, TopicNames

_RETRY_BACKOFF_S = (0.1, 0.5, 1.0, 2.0, 5.0)
_TOPICS = {topic.base: topic for topic in PLATFORM_TOPICS}
# What a policy raises on a record of the wrong shape (a valid envelope around a body of wrong types): the
# record is refused for good, like a non-retriable FeatureplaneError, so it cannot block its partition.
_MALFORMED = (TypeError, AttributeError, KeyError, ValueError, IndexError)
MAX_SOURCE_RECORD_BYTES = 256 * 1024
# A dead-lettered payload is kept up to this size (its coordinates point at the whole of it): a huge record
# must not make the dead-letter message itself too large for the broker.
DEAD_LETTER_PAYLOAD_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Inbound:
    """A consumed record; `message` is set for platform topics, None for raw source records."""

    record: Record
    message: Message[Any] | None


@dataclass(frozen=True, slots=True)
class Decision:
    outputs: list[Outbound] = field(default_factory=list)
    # audit records for cross-plane messages the component consumed (e.g. F5 source records)
    consumed_audits: list[AuditRecord] = field(default_factory=list)


class Handler(Protocol):
    """A component's policy, behind the runtime that does its I/O."""

    component: Component

    def subscriptions(self) -> Sequence[str]:
        """The topic names to consume now; the runtime re-subscribes when this changes."""
        ...

    async def handle(self, batch: Sequence[Inbound]) -> Decision: ...


# Records per poll, so per transaction: one transaction costs several broker round trips whatever it holds,
# so a backlog goes through in large batches (with 1,000, Rift spent most of its time waiting on commits).
MAX_POLL_RECORDS = 10_000


class ComponentRuntime:
    def __init__(self, bus: Bus, names: TopicNames, handler: Handler, *, instance_id: str,
                 group_id: str, codec: Codec = CODEC, max_records: int = MAX_POLL_RECORDS,
                 max_record_bytes: int = MAX_SOURCE_RECORD_BYTES) -> None:
        self._bus = bus
        self._names = names
        self._handler = handler
        self._instance_id = instance_id
        self._group_id = group_id
        self._codec = codec
        self._max_records = max_records
        self._max_record_bytes = max_record_bytes
        self._committed: dict[tuple[str, int], int] = {}
        self._consumer: Consumer | None = None
        self._producer: TransactionalProducer | None = None
        self._subscribed: tuple[str, ...] = ()
        self._log = structlog.get_logger().bind(component=str(handler.component), instance=instance_id)
        self.batches = 0
        self.records = 0
        self.failures = 0

    async def start(self) -> None:
        topics = tuple(self._handler.subscriptions())
        self._consumer = await self._bus.group_consumer(topics, self._group_id)
        self._subscribed = topics
        self._producer = await self._bus.transactional_producer(f"{self._group_id}.{self._instance_id}")

    async def run(self, stop: asyncio.Event) -> None:
        """Process batches until `stop` is set; failures are retried with backoff, never dropped."""
        attempt = 0
        while not stop.is_set():
            try:
                await self.step()
                attempt = 0
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - any failure aborts the transaction; the batch is replayed
                self.failures += 1
                delay = _RETRY_BACKOFF_S[min(attempt, len(_RETRY_BACKOFF_S) - 1)]
                attempt += 1
                self._log.exception("batch_failed", retry_in_s=delay)
                await asyncio.sleep(delay)

    async def step(self, timeout_ms: int = 200) -> int:
        """Consume and process one batch; returns how many records it held."""
        consumer, producer = self._clients()
        await self._follow_subscriptions(consumer)
        records = await consumer.poll(timeout_ms, self._max_records)
        if not records:
            return 0
        try:
            try:
                await self._process(records, producer)
            except MessageTooLarge as exc:
                self._log.warning("batch_output_too_large", error=exc.message, records=len(records))
                for record in records:
                    await self._process_alone(record, producer)
        except BaseException:
            # from the batch's first offsets, or past the records already committed one by one
            await consumer.rewind(self._resume_offsets(records))
            raise
        self.batches += 1
        self.records += len(records)
        return len(records)

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.close()
        if self._producer is not None:
            await self._producer.close()

    async def _process(self, records: Sequence[Record], producer: TransactionalProducer) -> None:
        batch: list[Inbound] = []
        dead: list[Outbound] = []
        for record in records:
            inbound = self._inbound(record)
            if isinstance(inbound, str):
                dead.append(self.dead_letter(record, inbound))
            else:
                batch.append(inbound)
        decision = await self._decide(batch)
        outputs = [*decision.outputs, *dead]
        async with producer.transaction() as txn:
            if outputs or decision.consumed_audits:
                txn.announce([self._names.name(AUDIT)])
            # The offsets join the transaction while its messages are being sent (each is a broker round
            # trip of its own); the commit still waits for all of them.
            await _together(
                publish(txn, self._codec, self._names, self._handler.component, outputs, decision.consumed_audits),
                txn.commit_offsets(_next_offsets(records), self._group_id))
        self._committed.update(_next_offsets(records))

    async def _process_alone(self, record: Record, producer: TransactionalProducer) -> None:
        """One record in its own transaction; if an output it causes is larger than Kafka takes, the record
        goes to the dead-letter topic instead (with the reason), so it cannot block its partition."""
        try:
            await self._process([record], producer)
        except MessageTooLarge as exc:
            async with producer.transaction() as txn:
                await publish(txn, self._codec, self._names, self._handler.component,
                              [self.dead_letter(record, f"an output of this record is too large: {exc.message}")])
                await txn.commit_offsets(_next_offsets([record]), self._group_id)
            self._committed.update(_next_offsets([record]))

    def _resume_offsets(self, records: Sequence[Record]) -> dict[tuple[str, int], int]:
        return {tp: max(first, self._committed.get(tp, first)) for tp, first in _first_offsets(records).items()}

    def _inbound(self, record: Record) -> Inbound | str:
        """The record ready for the policy, or why it is refused for good."""
        if record.value is None:  # a tombstone: nothing to decode or parse
            return "the record has no value"
        base = self._names.base_of(record.topic)
        if base is None:
            if len(record.value) > self._max_record_bytes:
                return f"the record is {len(record.value)} bytes; at most {self._max_record_bytes} are accepted"
            return Inbound(record, None)
        try:
            message = self._codec.decode(record.value)
        except DecodeError as exc:
            return str(exc)
        topic = _TOPICS.get(base)
        if topic is not None and not topic.allows(message.body):
            return f"{type(message.body).__name__} does not belong on topic {record.topic}"
        problem = shape_problem(message.body)
        return Inbound(record, message) if problem is None else f"malformed {message.envelope.type}: {problem}"

    async def lag(self) -> dict[str, int]:
        """Per `topic/partition` of this consumer: how many offsets the group has still to process, the end
        offset (last stable offset) minus the consumer's position. Between batches the position is the
        committed offset, moved past transaction markers (which a committed offset never counts, so lag
        from committed offsets alone would never reach 0 on a transactional topic)."""
        consumer, _ = self._clients()
        ends = await consumer.end_offsets()
        positions = await consumer.positions()
        return {f"{t}/{p}": max(0, end - max(positions.get((t, p), 0), self._committed.get((t, p), 0)))
                for (t, p), end in sorted(ends.items())}

    async def _decide(self, batch: Sequence[Inbound]) -> Decision:
        """The policy's decision; if it refuses the batch for good, each record is retried alone and
        the ones it still refuses go to the dead-letter topic, so one poison record blocks nothing."""
        if not batch:
            return Decision()
        try:
            return await self._handler.handle(batch)
        except FeatureplaneError as exc:
            if exc.retriable:
                raise
            self._log.warning("batch_refused", error=exc.message, records=len(batch))
        except _MALFORMED as exc:
            self._log.warning("batch_malformed", error=repr(exc), records=len(batch))
        merged = Decision()
        for inbound in batch:
            try:
                one = await self._handler.handle([inbound])
            except FeatureplaneError as exc:
                if exc.retriable:
                    raise
                merged.outputs.append(self.dead_letter(inbound.record, exc.message))
                continue
            except _MALFORMED as exc:
                merged.outputs.append(self.dead_letter(inbound.record, f"malformed record: {exc!r}"))
                continue
            merged.outputs.extend(one.outputs)
            merged.consumed_audits.extend(one.consumed_audits)
        return merged

    def dead_letter(self, record: Record, reason: str) -> Outbound:
        """An outbound that keeps an unprocessable record, with the reason, on the dead-letter topic."""
        reason = reason[:1000]  # a reason quoting a huge record stays a reason
        body = RecordDeadLettered(
            reason, SourceRange(record.topic, record.partition, record.offset, record.offset),
            (record.value or b"")[:DEAD_LETTER_PAYLOAD_BYTES],
        )
        message = self._codec.message(body, producer=self._handler.component, workspace="")
        self._log.warning("record_dead_lettered", topic=record.topic, partition=record.partition,
                          offset=record.offset, reason=reason)
        return Outbound(DEAD_LETTER, message)

    async def _follow_subscriptions(self, consumer: Consumer) -> None:
        wanted = tuple(self._handler.subscriptions())
        if wanted != self._subscribed:
            await consumer.subscribe(wanted)
            self._subscribed = wanted
            self._log.info("subscribed", topics=list(wanted))

    def _clients(self) -> tuple[Consumer, TransactionalProducer]:
        if self._consumer is None or self._producer is None:
            raise RuntimeError("ComponentRuntime.start() was not called")
        return self._consumer, self._producer


async def _together(*steps: Awaitable[Any]) -> None:
    """Run `steps` at once; if one fails, the others are cancelled (and awaited) and its error is raised."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _next_offsets(records: Sequence[Record]) -> dict[tuple[str, int], int]:
    offsets: dict[tuple[str, int], int] = {}
    for r in records:
        key = (r.topic, r.partition)
        offsets[key] = max(offsets.get(key, 0), r.offset + 1)
    return offsets


def _first_offsets(records: Sequence[Record]) -> dict[tuple[str, int], int]:
    offsets: dict[tuple[str, int], int] = {}
    for r in records:
        key = (r.topic, r.partition)
        offsets[key] = min(offsets.get(key, r.offset), r.offset)
    return offsets
