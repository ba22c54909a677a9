"""OnlineStore shard: applies online writes (F7) and answers read requests (F2 → F3)."""

from __future__ import annotations

from collections.abc import Sequence

from actors.outbox import Outbound
from actors.runtime import Decision, Inbound
from events.codec import CODEC, Codec
from events.data import (
    Lookup,
    OnlineRowsRead,
    OnlineRowsWritten,
    ReadOnlineRows,
    StoredRow,
    TileState,
    WriteOnlineRows,
    WriteTiles,
)
from events.envelope import Message
from events.planes import Component
from events.topics import ONLINE_CHANGELOG, ONLINE_READS, ONLINE_REPLIES, ONLINE_WRITES, TopicNames
from stores.online import OnlineStore, OnlineWrite

# The encoded answers one reply message carries at most; a larger reply is split into parts. Well under
# Kafka's default message limit (1 MiB), which also has to hold the envelope and the record's framing.
MAX_REPLY_BYTES = 512 * 1024


class OnlineStoreShard:
    component = Component.ONLINE_STORE

    def __init__(self, names: TopicNames, store: OnlineStore, codec: Codec = CODEC,
                 max_reply_bytes: int = MAX_REPLY_BYTES) -> None:
        self._names = names
        self._store = store
        self._codec = codec
        self._max_reply_bytes = max_reply_bytes

    def subscriptions(self) -> Sequence[str]:
        return [self._names.name(ONLINE_WRITES), self._names.name(ONLINE_READS)]

    def _changelog(self, write: Message[WriteOnlineRows | WriteTiles]) -> Outbound:
        """Tells the feature servers a write is applied: read-after-write for ingest, cache refresh later."""
        if isinstance(write.body, WriteOnlineRows):
            count, keys = len(write.body.rows), [row.entity_key for row in write.body.rows]
        else:
            count, keys = len(write.body.tiles), [tile.entity_key for tile in write.body.tiles]
        body = OnlineRowsWritten(write.body.feature_view, count, write.envelope.event_id, tuple(dict.fromkeys(keys)))
        return Outbound(ONLINE_CHANGELOG, self._codec.message(
            body, producer=self.component, workspace=write.envelope.workspace, caused_by=write.envelope))

    async def handle(self, batch: Sequence[Inbound]) -> Decision:
        writes = [
            OnlineWrite(i.record.coordinates, i.message.envelope.workspace, i.message.body,
                        i.message.envelope.event_id)
            for i in batch if i.message is not None and isinstance(i.message.body, WriteOnlineRows | WriteTiles)
        ]
        # Writes first: a read that arrives in the same batch as a write sees it (read-after-write).
        if writes:
            self._store.apply_writes(writes)
        outputs: list[Outbound] = [self._changelog(i.message) for i in batch if i.message is not None
                                   and isinstance(i.message.body, WriteOnlineRows | WriteTiles)]
        for inbound in batch:
            message = inbound.message
            if message is None or not isinstance(message.body, ReadOnlineRows):
                continue
            request = message.body
            workspace = message.envelope.workspace
            rows = self._store.read(workspace, request.lookups)
            tiles = tuple(None if lookup.tile_range is None else self._store.read_tiles(
                workspace, lookup.feature_view, lookup.entity_key, *lookup.tile_range) for lookup in request.lookups)
            reply = OnlineRowsRead(request.request_id, request.reply_to, tuple(rows), tiles)
            outputs.extend(Outbound(ONLINE_REPLIES, self._codec.message(
                part, producer=self.component, workspace=workspace, caused_by=message.envelope))
                for part in split_reply(reply, request.lookups, self._max_reply_bytes, self._codec))
        return Decision(outputs)


def split_reply(reply: OnlineRowsRead, lookups: Sequence[Lookup], budget: int,
                codec: Codec = CODEC) -> list[OnlineRowsRead]:
    """`reply` as parts whose answers each encode to at most about `budget` bytes (a Kafka message has a
    size limit, and a transaction that cannot send its reply would be retried forever). A lookup whose
    answer alone is larger is answered with an error instead of its row and tiles."""
    if len(codec.encode_value(reply)) <= budget:
        return [reply]  # the usual case: one encoding of the whole, no sizing of each answer
    tiles = reply.tiles or (None,) * len(reply.rows)
    sizes = [_answer_bytes(row, view_tiles, codec) for row, view_tiles in zip(reply.rows, tiles, strict=True)]
    answers: list[tuple[StoredRow | None, tuple[TileState, ...] | None, str | None]] = [
        (None, None, f"the stored answer for feature view '{lookup.feature_view}' is {size} bytes, more than "
                     f"one reply may carry ({budget} bytes)") if size > budget else (row, view_tiles, None)
        for row, view_tiles, size, lookup in zip(reply.rows, tiles, sizes, lookups, strict=True)]
    groups: list[tuple[int, int]] = []  # [first, end) of each part
    start, filled = 0, 0
    for i, (_, _, error) in enumerate(answers):
        size = len(error) if error is not None else sizes[i]
        if i > start and filled + size > budget:
            groups.append((start, i))
            start, filled = i, 0
        filled += size
    groups.append((start, len(answers)))
    return [OnlineRowsRead(reply.request_id, reply.reply_to, tuple(a[0] for a in answers[first:end]),
                           tuple(a[1] for a in answers[first:end]), part, len(groups), first,
                           tuple(a[2] for a in answers[first:end]))
            for part, (first, end) in enumerate(groups)]


def _answer_bytes(row: StoredRow | None, tiles: Sequence[TileState] | None, codec: Codec) -> int:
    """About what one lookup's answer adds to an encoded reply."""
    size = 1 if row is None else len(codec.encode_value(row))
    return size + sum(len(codec.encode_value(tile)) for tile in tiles or ())
