"""An in-memory bus with the Kafka bus's contract, for unit tests of policies and the runtime.

Transactions buffer their messages and offsets and make them visible only on commit; consumers see
committed messages only (like read_committed); a group resumes from its committed offsets.
Never used by anything a user runs.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager

from actors.bus import Outgoing, Record, StartAt
from events.data import Coordinates
from events.errors import MessageTooLarge


class _Log:
    def __init__(self, max_message_bytes: int | None = None) -> None:
        self.topics: dict[str, list[Record]] = defaultdict(list)
        self.committed: dict[str, dict[tuple[str, int], int]] = defaultdict(dict)
        self.max_message_bytes = max_message_bytes

    def check_size(self, message: Outgoing) -> None:
        """Refuse a message over the limit, as the Kafka producer does with its max_request_size."""
        if self.max_message_bytes is not None and len(message.value) > self.max_message_bytes:
            raise MessageTooLarge(f"a {len(message.value)}-byte message for topic {message.topic} is larger "
                                  f"than {self.max_message_bytes} bytes")

    def append(self, message: Outgoing) -> Coordinates:
        records = self.topics[message.topic]
        record = Record(message.topic, 0, len(records), message.key, message.value, 0)
        records.append(record)
        return record.coordinates


class MemoryTransaction:
    def __init__(self, log: _Log) -> None:
        self.messages: list[Outgoing] = []
        self.offsets: dict[str, dict[tuple[str, int], int]] = defaultdict(dict)
        self._log = log

    async def send_all(self, messages: Sequence[Outgoing]) -> list[Coordinates]:
        """The offsets the messages get on commit (one transaction at a time, as the tests use it)."""
        coordinates = []
        for message in messages:
            self._log.check_size(message)
            pending = sum(1 for m in self.messages if m.topic == message.topic)
            offset = len(self._log.topics[message.topic]) + pending
            coordinates.append(Coordinates(message.topic, 0, offset))
            self.messages.append(message)
        return coordinates

    async def commit_offsets(self, offsets: Mapping[tuple[str, int], int], group_id: str) -> None:
        self.offsets[group_id].update(offsets)

    def announce(self, topics: Sequence[str]) -> None:
        return None


class MemoryProducer:
    def __init__(self, log: _Log, fail_on_commit: list[bool]) -> None:
        self._log = log
        self._fail_on_commit = fail_on_commit

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[MemoryTransaction]:
        txn = MemoryTransaction(self._log)
        yield txn
        if self._fail_on_commit and self._fail_on_commit.pop(0):
            raise ConnectionError("injected commit failure")
        for message in txn.messages:
            self._log.append(message)
        for group, offsets in txn.offsets.items():
            self._log.committed[group].update(offsets)

    async def close(self) -> None:
        return None


class MemoryConsumer:
    def __init__(self, log: _Log, topics: Sequence[str], group_id: str | None, start: StartAt) -> None:
        self._log = log
        self.group_id = group_id
        self._positions: dict[str, int] = {}
        self._start = start
        self._topics: list[str] = []
        self._assign(topics)

    def _assign(self, topics: Sequence[str]) -> None:
        self._topics = list(topics)
        for topic in topics:
            if topic in self._positions:
                continue
            committed = self._log.committed[self.group_id].get((topic, 0)) if self.group_id else None
            if committed is not None:
                self._positions[topic] = committed
            else:
                self._positions[topic] = len(self._log.topics[topic]) if self._start == "latest" else 0

    async def poll(self, timeout_ms: int, max_records: int) -> list[Record]:
        batch: list[Record] = []
        for topic in self._topics:
            records = self._log.topics[topic][self._positions[topic]:][: max_records - len(batch)]
            batch.extend(records)
            self._positions[topic] += len(records)
        # Like a real poll, an empty one waits (briefly) and every one lets other tasks run.
        await asyncio.sleep(0 if batch else min(timeout_ms, 10) / 1000)
        return batch

    async def subscribe(self, topics: Sequence[str]) -> None:
        self._assign(topics)

    async def rewind(self, positions: Mapping[tuple[str, int], int]) -> None:
        for (topic, _), offset in positions.items():
            self._positions[topic] = offset

    async def positions(self) -> dict[tuple[str, int], int]:
        return {(topic, 0): position for topic, position in self._positions.items() if topic in self._topics}

    async def end_offsets(self) -> dict[tuple[str, int], int]:
        return {(topic, 0): len(self._log.topics[topic]) for topic in self._topics}

    async def close(self) -> None:
        return None


class MemoryBus:
    def __init__(self, max_message_bytes: int | None = None) -> None:
        """`max_message_bytes`: messages larger than this are refused (None: no limit)."""
        self.log = _Log(max_message_bytes)
        # Queue of booleans: True makes the next transaction's commit fail (tests of the retry path).
        self.fail_on_commit: list[bool] = []

    def records(self, topic: str) -> list[Record]:
        return list(self.log.topics[topic])

    def committed(self, group_id: str) -> dict[tuple[str, int], int]:
        return dict(self.log.committed[group_id])

    async def ensure_topics(self, topics: Mapping[str, int]) -> None:
        for name in topics:
            self.log.topics.setdefault(name, [])

    async def group_consumer(self, topics: Sequence[str], group_id: str) -> MemoryConsumer:
        return MemoryConsumer(self.log, topics, group_id, "earliest")

    async def reader(self, topics: Sequence[str], start: StartAt,
                     positions: Mapping[tuple[str, int], int] | None = None) -> MemoryConsumer:
        consumer = MemoryConsumer(self.log, topics, None, start)
        await consumer.rewind(positions or {})
        return consumer

    async def transactional_producer(self, transactional_id: str) -> MemoryProducer:
        return MemoryProducer(self.log, self.fail_on_commit)

    async def send(self, messages: Sequence[Outgoing]) -> list[Coordinates]:
        for message in messages:
            self.log.check_size(message)
        return [self.log.append(m) for m in messages]

    async def close(self) -> None:
        return None
