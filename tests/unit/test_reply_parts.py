"""Online-store replies larger than one Kafka message: split into parts by the store, joined back by the
feature server; an answer too large on its own is an error for that lookup; and an output larger than Kafka
takes never blocks a consumer (the runtime dead-letters the input that caused it and goes on)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from actors.bus import Outgoing
from actors.components.online_store import OnlineStoreShard, split_reply
from actors.components.serving import FeatureStatus, assemble
from actors.memory_bus import MemoryBus
from actors.replies import ReplyRouter, join_parts
from actors.runtime import ComponentRuntime
from events.codec import CODEC
from events.data import (
    FeatureRow,
    Lookup,
    OnlineRowsRead,
    ReadOnlineRows,
    SourceRange,
    StoredRow,
    TileState,
    WriteOnlineRows,
)
from events.envelope import Message
from events.flows import Flow
from events.planes import Component
from events.topics import AUDIT, DEAD_LETTER, ONLINE_READS, ONLINE_REPLIES, ONLINE_WRITES, TopicNames
from stores.online import InMemoryOnlineStore
from tests.unit.test_edge_input import _workspace

NAMES = TopicNames("t")
NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


def _stored(entity: str, merchant_bytes: int) -> StoredRow:
    return StoredRow(FeatureRow((entity,), NOW, {"last_amount": 1.0, "last_merchant": "m" * merchant_bytes}), "w1")


def _message(body: Any, producer: Component = Component.ONLINE_STORE) -> Message[Any]:
    return CODEC.message(body, producer=producer, workspace="prod")


def _write(entity: str, merchant_bytes: int, offset: int) -> bytes:
    row = FeatureRow((entity,), NOW, {"last_merchant": "m" * merchant_bytes})
    return CODEC.encode(_message(WriteOnlineRows("user_last", (row,), SourceRange("s", 0, offset, offset)),
                                 Component.RIFT))


def _bodies(bus: MemoryBus, topic: Any) -> list[Any]:
    return [CODEC.decode(r.value).body for r in bus.records(NAMES.name(topic))]


def test_a_reply_within_the_budget_is_one_message() -> None:
    reply = OnlineRowsRead("r", "fs", (_stored("u1", 10), None))
    assert split_reply(reply, [Lookup("user_last", ("u1",)), Lookup("user_last", ("u2",))], 10_000) == [reply]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.none() | st.integers(0, 3000), min_size=1, max_size=20), st.integers(1000, 8000))
@example(sizes=[891], budget=1000)  # the row fits, the row with its tile does not (found by CI)
def test_parts_stay_within_the_budget_and_join_back_to_the_whole(sizes: list[int | None], budget: int) -> None:
    rows = tuple(None if n is None else _stored(f"u{i}", n) for i, n in enumerate(sizes))
    tiles = tuple((TileState(float(i), (i,), "w"),) if i % 3 == 0 else None for i in range(len(rows)))
    lookups = [Lookup("user_last", (f"u{i}",)) for i in range(len(rows))]
    reply = OnlineRowsRead("r", "fs", rows, tiles)
    parts = split_reply(reply, lookups, budget)
    assert [p.part for p in parts] == list(range(len(parts)))
    assert {p.parts for p in parts} == {len(parts)}
    for part in parts:  # each part's answers fit the budget, its envelope and framing aside
        answered = OnlineRowsRead("", "", part.rows, part.tiles, errors=part.errors)
        assert len(part.rows) == 1 or len(CODEC.encode_value(answered)) <= budget + 200
    whole = join_parts([_message(p) for p in reversed(parts)]).body
    # an answer is its row and its tiles; one larger than the budget on its own is an error
    answer_bytes = [(0 if row is None else len(CODEC.encode_value(row)))
                    + sum(len(CODEC.encode_value(tile)) for tile in view_tiles or ())
                    for row, view_tiles in zip(rows, tiles, strict=True)]
    too_big = [i for i, size in enumerate(answer_bytes) if size > budget]
    assert [i for i, e in enumerate(whole.errors or (None,) * len(rows)) if e is not None] == too_big
    assert whole.rows == tuple(None if i in too_big else row for i, row in enumerate(rows))
    assert whole.tiles == tuple(None if i in too_big else t for i, t in enumerate(tiles))
    assert (whole.part, whole.parts, whole.first) == (0, 1, 0)


def test_an_answer_larger_than_the_budget_alone_is_an_error_for_that_lookup_only() -> None:
    reply = OnlineRowsRead("r", "fs", (_stored("u1", 5000), _stored("u2", 10)))
    lookups = [Lookup("user_last", ("u1",)), Lookup("user_last", ("u2",))]
    (part,) = split_reply(reply, lookups, 2000)
    assert part.rows == (None, reply.rows[1])
    assert part.errors[1] is None
    assert part.errors[0] is not None
    assert "user_last" in part.errors[0]
    assert "2000 bytes" in part.errors[0]


def test_a_lookup_the_store_could_not_answer_is_served_as_error_with_the_reason() -> None:
    ws = _workspace()
    served = assemble(ws, ws.service("fraud"), OnlineRowsRead("r", "x", (None,), errors=("too large",)), NOW)
    assert [(f.value, f.status, f.error) for f in served] == [(None, FeatureStatus.ERROR, "too large")] * 2


async def test_the_shard_splits_a_reply_each_part_a_message_with_its_own_audit_record() -> None:
    bus = MemoryBus(max_message_bytes=8000)
    store = InMemoryOnlineStore()
    await bus.send([Outgoing(NAMES.name(ONLINE_WRITES), _write(f"u{i}", 1500, i)) for i in range(10)])
    read = _message(ReadOnlineRows("r1", tuple(Lookup("user_last", (f"u{i}",)) for i in range(10)), "fs-0"),
                    Component.FEATURE_SERVER)
    await bus.send([Outgoing(NAMES.name(ONLINE_READS), CODEC.encode(read))])
    shard = ComponentRuntime(bus, NAMES, OnlineStoreShard(NAMES, store, max_reply_bytes=4000),
                             instance_id="os-0", group_id="t.os")
    await shard.start()
    assert await shard.step() == 11
    replies = bus.records(NAMES.name(ONLINE_REPLIES))
    assert len(replies) >= 4
    assert all(len(r.value) <= 8000 for r in replies)
    parts = [CODEC.decode(r.value) for r in replies]
    whole = join_parts(parts).body
    assert [s.row.entity_key for s in whole.rows] == [(f"u{i}",) for i in range(10)]
    f3 = [a for a in _bodies(bus, AUDIT) if a.flow is Flow.F3 and a.topic == NAMES.name(ONLINE_REPLIES)]
    assert sorted(a.first_offset for a in f3) == [r.offset for r in replies]
    assert sum(a.row_count for a in f3) == 10
    assert _bodies(bus, DEAD_LETTER) == []


async def test_the_reply_router_answers_a_request_once_every_part_is_read() -> None:
    bus = MemoryBus()
    router = ReplyRouter(bus, [NAMES.name(ONLINE_REPLIES)], "fs-0")
    await router.start()
    try:
        rows = tuple(_stored(f"u{i}", 10) for i in range(3))
        parts = [OnlineRowsRead("r1", "fs-0", rows[:2], (None, None), 0, 2, 0),
                 OnlineRowsRead("r1", "fs-0", rows[2:], (None,), 1, 2, 2, ("too large",))]
        future = router.expect("r1")
        await bus.send([Outgoing(NAMES.name(ONLINE_REPLIES), CODEC.encode(_message(parts[1])))])
        await asyncio.sleep(0.05)
        assert not future.done()  # half a reply answers nothing
        await bus.send([Outgoing(NAMES.name(ONLINE_REPLIES), CODEC.encode(_message(parts[0])))])
        reply = await router.wait("r1", future, 2.0)
        assert reply.body.rows == rows
        assert reply.body.errors == (None, None, "too large")
    finally:
        router.forget("r1")
        await router.close()


async def test_an_output_larger_than_kafka_takes_dead_letters_its_input_and_the_rest_goes_on() -> None:
    # No reply budget to speak of: only the runtime's backstop stands between the big reply and the broker.
    bus = MemoryBus(max_message_bytes=4000)
    store = InMemoryOnlineStore()
    await bus.send([Outgoing(NAMES.name(ONLINE_WRITES), _write(key, size, i))
                    for i, (key, size) in enumerate([("b1", 3000), ("b2", 3000), ("small", 1)])])
    shard = ComponentRuntime(bus, NAMES, OnlineStoreShard(NAMES, store, max_reply_bytes=10**9),
                             instance_id="os-0", group_id="t.os")
    await shard.start()
    assert await shard.step() == 3
    asked = [("small",), ("b1", "b2"), ("small",)]  # both big ones together are more than a message takes
    reads = [_message(ReadOnlineRows(f"r{i}", tuple(Lookup("user_last", (k,)) for k in keys), "fs-0"),
                      Component.FEATURE_SERVER) for i, keys in enumerate(asked)]
    await bus.send([Outgoing(NAMES.name(ONLINE_READS), CODEC.encode(r)) for r in reads])
    assert await shard.step() == 3  # one batch; without the backstop it would be retried forever
    assert [r.request_id for r in _bodies(bus, ONLINE_REPLIES)] == ["r0", "r2"]
    (dead,) = _bodies(bus, DEAD_LETTER)
    assert "too large" in dead.reason
    assert CODEC.decode(dead.payload).body.request_id == "r1"
    assert bus.committed("t.os")[(NAMES.name(ONLINE_READS), 0)] == 3
    f3 = [a for a in _bodies(bus, AUDIT) if a.flow is Flow.F3 and a.topic == NAMES.name(ONLINE_REPLIES)]
    assert len(f3) == 2  # the dropped reply was never sent, so it has no audit record
    await bus.send([Outgoing(NAMES.name(ONLINE_READS), CODEC.encode(reads[0]))])
    assert await shard.step() == 1  # and the shard keeps answering
    assert len(_bodies(bus, ONLINE_REPLIES)) == 3
