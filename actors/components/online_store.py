"""OnlineStore shard: applies online writes (F7) and answers read requests (F2 → F3)."""

from __future__ import annotations

from collections.abc import Sequence

from actors.outbox import Outbound
from actors.runtime import Decision, Inbound
from events.codec import CODEC, Codec
from events.data import OnlineRowsRead, OnlineRowsWritten, ReadOnlineRows, WriteOnlineRows, WriteTiles
from events.envelope import Message
from events.planes import Component
from events.topics import ONLINE_CHANGELOG, ONLINE_READS, ONLINE_REPLIES, ONLINE_WRITES, TopicNames
from stores.online import OnlineStore, OnlineWrite


class OnlineStoreShard:
    component = Component.ONLINE_STORE

    def __init__(self, names: TopicNames, store: OnlineStore, codec: Codec = CODEC) -> None:
        self._names = names
        self._store = store
        self._codec = codec

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
            outputs.append(Outbound(ONLINE_REPLIES, self._codec.message(
                reply, producer=self.component, workspace=message.envelope.workspace,
                caused_by=message.envelope)))
        return Decision(outputs)
