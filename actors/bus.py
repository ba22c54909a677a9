"""The message bus interface every component talks through.

`actors.kafka_bus` implements it with aiokafka (the only module that imports aiokafka);
`actors.memory_bus` implements it in memory for unit tests. Same contract, same tests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Literal, Protocol

from events.data import Coordinates

StartAt = Literal["earliest", "latest"]


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed message."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int

    @property
    def coordinates(self) -> Coordinates:
        return Coordinates(self.topic, self.partition, self.offset)


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    value: bytes
    key: bytes | None = None


class Transaction(Protocol):
    async def send_all(self, messages: Sequence[Outgoing]) -> list[Coordinates]:
        """Send within the transaction; the coordinates are final once it commits."""
        ...

    def announce(self, topics: Sequence[str]) -> None:
        """Topics this transaction will send to later (e.g. the audit records that follow the messages they
        name): a Kafka transaction registers them with its first send, one broker round trip instead of two."""
        ...

    async def commit_offsets(self, offsets: Mapping[tuple[str, int], int], group_id: str) -> None:
        """Commit the consumer group's next offsets as part of the transaction."""
        ...


class TransactionalProducer(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """Commits on normal exit, aborts when the block raises."""
        ...

    async def close(self) -> None: ...


class Consumer(Protocol):
    group_id: str | None

    async def poll(self, timeout_ms: int, max_records: int) -> list[Record]: ...

    async def subscribe(self, topics: Sequence[str]) -> None:
        """Change the consumed topics (group consumers only)."""
        ...

    async def rewind(self, positions: Mapping[tuple[str, int], int]) -> None:
        """Consume again from these offsets (after an aborted transaction)."""
        ...

    async def positions(self) -> dict[tuple[str, int], int]:
        """The next offset this consumer will read, per assigned partition."""
        ...

    async def end_offsets(self) -> dict[tuple[str, int], int]:
        """The offset after the last committed message, per assigned partition (the last stable offset)."""
        ...

    async def close(self) -> None: ...


async def stop_reading(task: asyncio.Task[None] | None, consumer: Consumer | None) -> None:
    """Stop a background task that polls `consumer`, then close the consumer."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if consumer is not None:
        await consumer.close()


class Bus(Protocol):
    async def ensure_topics(self, topics: Mapping[str, int]) -> None:
        """Create the topics that do not exist yet, with the given partition counts."""
        ...

    async def group_consumer(self, topics: Sequence[str], group_id: str) -> Consumer:
        """A read_committed member of `group_id`, committing only through transactions."""
        ...

    async def reader(self, topics: Sequence[str], start: StartAt,
                     positions: Mapping[tuple[str, int], int] | None = None) -> Consumer:
        """A read_committed consumer of every partition of `topics`, outside any group; partitions in
        `positions` resume from there, the others start at `start`."""
        ...

    async def transactional_producer(self, transactional_id: str) -> TransactionalProducer: ...

    async def send(self, messages: Sequence[Outgoing]) -> list[Coordinates]:
        """Send outside any transaction (idempotent, acks=all): clients such as the CLI."""
        ...

    async def close(self) -> None: ...
