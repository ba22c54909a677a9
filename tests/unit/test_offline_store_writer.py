"""The offline store component appends both kinds of offline writes (rows from Rift, Arrow columns from
batch jobs) in one commit, in the order they were consumed, and nothing else."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import polars as pl

from actors.bus import Record
from actors.components.offline_store import OfflineStoreWriter
from actors.runtime import Inbound
from events.codec import CODEC
from events.data import (
    OFFLINE_EVENT_TIME,
    FeatureRow,
    RecordDeadLettered,
    SourceRange,
    WriteOfflineColumns,
    WriteOfflineRows,
)
from events.planes import Component
from events.topics import OFFLINE_WRITES, TopicNames
from stores.offline import InMemoryOfflineStore

NAMES = TopicNames("t")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
SOURCE = SourceRange("src", 0, 0, 0)


def inbound(offset: int, body: object) -> Inbound:
    message = CODEC.message(body, producer=Component.RIFT, workspace="ws")
    return Inbound(Record(NAMES.name(OFFLINE_WRITES), 0, offset, None, CODEC.encode(message), 0), message)


def arrow(frame: pl.DataFrame) -> bytes:
    out = io.BytesIO()
    frame.write_ipc_stream(out, compat_level=pl.CompatLevel.oldest())
    return out.getvalue()


async def test_rows_and_columns_are_appended_in_consumed_order() -> None:
    columns = pl.DataFrame({"user_id": ["u2"], OFFLINE_EVENT_TIME: [T0], "amount": [2.0]})
    with InMemoryOfflineStore() as store:
        writer = OfflineStoreWriter(NAMES, store)
        decision = await writer.handle([
            inbound(0, WriteOfflineRows("fv", ("user_id",), (FeatureRow(("u1",), T0, {"amount": 1.0}),), SOURCE)),
            inbound(1, WriteOfflineColumns("fv", ("user_id",), arrow(columns), 1, SOURCE)),
            inbound(2, RecordDeadLettered("not an offline write", SOURCE, b"")),
        ])
        assert decision.outputs == []
        scanned = store.scan("ws", "fv").collect()
        assert scanned["user_id"].to_list() == ["u1", "u2"]
        assert scanned["amount"].to_list() == [1.0, 2.0]
        assert store.applied_offsets() == {(NAMES.name(OFFLINE_WRITES), 0): 2}
