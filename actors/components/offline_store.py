"""OfflineStore: appends offline writes (F7) to the Parquet dataset, offsets in the manifest commit."""

from __future__ import annotations

from collections.abc import Sequence

from actors.runtime import Decision, Inbound
from events.data import WriteOfflineColumns, WriteOfflineRows
from events.planes import Component
from events.topics import OFFLINE_WRITES, TopicNames
from stores.offline import OfflineStore, OfflineWrite


class OfflineStoreWriter:
    component = Component.OFFLINE_STORE

    def __init__(self, names: TopicNames, store: OfflineStore) -> None:
        self._names = names
        self._store = store

    def subscriptions(self) -> Sequence[str]:
        return [self._names.name(OFFLINE_WRITES)]

    async def handle(self, batch: Sequence[Inbound]) -> Decision:
        writes = [
            OfflineWrite(i.record.coordinates, i.message.envelope.workspace, i.message.body,
                         i.message.envelope.event_id)
            for i in batch
            if i.message is not None and isinstance(i.message.body, WriteOfflineRows | WriteOfflineColumns)
        ]
        if writes:
            self._store.append(writes)
        return Decision()
