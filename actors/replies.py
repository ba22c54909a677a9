"""Request/reply over Kafka for the feature server: replies are matched to waiting requests by id."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from actors.bus import Bus, Consumer, stop_reading
from events.codec import CODEC, Codec
from events.data import OnlineRowsRead, StoredRow, TileState
from events.envelope import Message
from events.errors import DeadlineExceeded, DecodeError
from events.shape import checked

# A poll that failed (the broker is away) is tried again after this long; the client reconnects by itself.
POLL_RETRY_S = 1.0


class ReplyRouter:
    """Reads reply topics from their end and resolves the future of each request this replica sent."""

    def __init__(self, bus: Bus, topics: Sequence[str], replica_id: str, codec: Codec = CODEC,
                 on_message: Callable[[Message[Any]], None] | None = None) -> None:
        """`on_message` sees every message read (the serving cache follows the changelog with it)."""
        self._bus = bus
        self._topics = list(topics)
        self.replica_id = replica_id
        self._codec = codec
        self._on_message = on_message
        self._pending: dict[str, asyncio.Future[Message[Any]]] = {}
        # request id -> the parts of a split reply read so far, by part number
        self._parts: dict[str, dict[int, Message[OnlineRowsRead]]] = {}
        # correlation id -> (messages still expected, future): e.g. the changelog entries of an ingest
        self._correlated: dict[str, tuple[int, asyncio.Future[None]]] = {}
        self._consumer: Consumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._log = structlog.get_logger().bind(replica=replica_id)

    async def start(self) -> None:
        # Positioned at the end before any request goes out, so no reply can be missed.
        self._consumer = await self._bus.reader(self._topics, "latest")
        self._task = asyncio.create_task(self._route(self._consumer), name="reply-router")

    def expect(self, request_id: str) -> asyncio.Future[Message[Any]]:
        future: asyncio.Future[Message[Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        return future

    async def wait(self, request_id: str, future: asyncio.Future[Message[Any]],
                   timeout_s: float) -> Message[Any]:
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            raise DeadlineExceeded(f"no reply to request {request_id} within {timeout_s}s") from None

    def expect_correlated(self, correlation_id: str, count: int) -> asyncio.Future[None]:
        """A future that resolves once `count` messages with this correlation id have been read."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if count <= 0:
            future.set_result(None)
        else:
            self._correlated[correlation_id] = (count, future)
        return future

    def forget_correlated(self, correlation_id: str) -> None:
        entry = self._correlated.pop(correlation_id, None)
        if entry is not None and not entry[1].done():
            entry[1].cancel()

    def forget(self, request_id: str) -> None:
        """Stop waiting for `request_id` (answered, timed out or never sent)."""
        future = self._pending.pop(request_id, None)
        self._parts.pop(request_id, None)
        if future is not None and not future.done():
            future.cancel()

    def _count_correlated(self, correlation_id: str) -> None:
        entry = self._correlated.get(correlation_id)
        if entry is None:
            return
        remaining, future = entry[0] - 1, entry[1]
        if remaining > 0:
            self._correlated[correlation_id] = (remaining, future)
            return
        del self._correlated[correlation_id]
        if not future.done():
            future.set_result(None)

    async def close(self) -> None:
        await stop_reading(self._task, self._consumer)

    async def _route(self, consumer: Consumer) -> None:
        while True:
            try:
                records = await consumer.poll(200, 1000)
            except Exception:  # noqa: BLE001 - e.g. the broker is away: the client reconnects, we poll again
                self._log.warning("reply_poll_failed", exc_info=True)
                await asyncio.sleep(POLL_RETRY_S)
                continue
            for record in records:
                try:
                    message = checked(self._codec.decode(record.value))
                except DecodeError as exc:
                    self._log.error("undecodable_reply", topic=record.topic, offset=record.offset,
                                    error=str(exc))
                    continue
                try:
                    self._deliver(message)
                except (TypeError, AttributeError, KeyError, ValueError, IndexError) as exc:
                    # a body of the wrong shape: reported, and the router keeps routing the others
                    self._log.error("malformed_reply", topic=record.topic, offset=record.offset, error=repr(exc))

    def _deliver(self, message: Message[Any]) -> None:
        self._count_correlated(message.envelope.correlation_id)
        if self._on_message is not None:
            self._on_message(message)
        if getattr(message.body, "reply_to", None) != self.replica_id:
            return
        future = self._pending.get(message.body.request_id)
        if future is None or future.done():
            return
        if isinstance(message.body, OnlineRowsRead) and message.body.parts != 1:
            joined = self._join_part(message)
            if joined is None:
                return  # more parts to come
            message = joined
        future.set_result(message)

    def _join_part(self, message: Message[OnlineRowsRead]) -> Message[OnlineRowsRead] | None:
        """The whole reply once every part of it has been read, else None (the part is kept)."""
        body = message.body
        if not 0 <= body.part < body.parts:
            raise ValueError(f"part {body.part} of a reply in {body.parts} parts")
        parts = self._parts.setdefault(body.request_id, {})
        parts[body.part] = message
        if len(parts) < body.parts:
            return None
        del self._parts[body.request_id]
        return join_parts([parts[i] for i in sorted(parts)])


def join_parts(parts: Sequence[Message[OnlineRowsRead]]) -> Message[OnlineRowsRead]:
    """One reply from the parts of a split one (in part order): its answers in lookup order."""
    rows: list[StoredRow | None] = []
    tiles: list[tuple[TileState, ...] | None] = []
    errors: list[str | None] = []
    for part in sorted(parts, key=lambda p: p.body.first):
        body = part.body
        if body.first != len(rows):
            raise ValueError(f"a reply part answers from lookup {body.first}, expected {len(rows)}")
        rows.extend(body.rows)
        tiles.extend(body.tiles or (None,) * len(body.rows))
        errors.extend(body.errors or (None,) * len(body.rows))
    first = parts[0].body
    whole = OnlineRowsRead(first.request_id, first.reply_to, tuple(rows), tuple(tiles),
                           errors=tuple(errors) if any(e is not None for e in errors) else ())
    return Message(parts[0].envelope, whole)
