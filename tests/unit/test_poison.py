"""Poison records: whatever lands on a consumed topic, the runtime dead-letters it with a reason and goes on."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from actors.bus import Outgoing
from actors.components.online_store import OnlineStoreShard
from actors.memory_bus import MemoryBus
from actors.runtime import DEAD_LETTER_PAYLOAD_BYTES, ComponentRuntime
from events.codec import CODEC
from events.data import FeatureRow, Lookup, SourceRange, WriteOnlineRows
from events.planes import Component
from events.topics import DEAD_LETTER, ONLINE_WRITES, TopicNames
from stores.online import InMemoryOnlineStore
from tests.unit.test_runtime import _publish_repo, _rift

NAMES = TopicNames("t")


def _dead(bus: MemoryBus) -> list[Any]:
    return [CODEC.decode(r.value).body for r in bus.records(NAMES.name(DEAD_LETTER))]


def _write(entity: str, offset: int) -> bytes:
    row = FeatureRow((entity,), datetime(2026, 1, 1, tzinfo=UTC), {"last_amount": 1.0})
    return CODEC.encode(CODEC.message(WriteOnlineRows("user_last", (row,), SourceRange("transactions", 0, offset,
                                                                                        offset)),
                                      producer=Component.RIFT, workspace="prod"))


def _wrong_shape() -> bytes:
    """A valid envelope whose body has the wrong types: rows is a string, the source a number."""
    body = WriteOnlineRows("user_last", "not rows", 7)  # type: ignore[arg-type]
    return CODEC.encode(CODEC.message(body, producer=Component.RIFT, workspace="prod"))


def _wrong_topic() -> bytes:
    """A well-formed message of a type that does not belong on the online-writes topic."""
    return CODEC.encode(CODEC.message(SourceRange("x", 0, 0, 0), producer=Component.RIFT, workspace="prod"))


async def test_every_kind_of_poison_on_a_platform_topic_is_dead_lettered_and_the_valid_write_applied() -> None:
    bus = MemoryBus()
    valid = _write("u1", 0)
    poison = [b"\x00\xffrandom", valid[: len(valid) // 2], _wrong_shape(), _wrong_topic(), b"\xc1" * 300_000]
    await bus.send([Outgoing(NAMES.name(ONLINE_WRITES), p) for p in [*poison, valid]])
    store = InMemoryOnlineStore()
    shard = ComponentRuntime(bus, NAMES, OnlineStoreShard(NAMES, store), instance_id="os-0", group_id="t.os")
    await shard.start()
    assert await shard.step() == len(poison) + 1
    dead = sorted(_dead(bus), key=lambda d: d.source.first_offset)
    assert [d.source.first_offset for d in dead] == list(range(len(poison)))
    assert all(d.reason for d in dead)
    assert "not a featureplane message" in dead[0].reason
    assert "malformed" in dead[2].reason
    assert "does not belong on topic" in dead[3].reason
    assert len(dead[4].payload) == DEAD_LETTER_PAYLOAD_BYTES  # a huge record is kept only in part
    assert store.read("prod", [Lookup("user_last", ("u1",))])[0] is not None
    assert bus.committed("t.os") == {(NAMES.name(ONLINE_WRITES), 0): len(poison) + 1}


async def test_an_oversized_source_record_is_dead_lettered_and_the_next_one_processed() -> None:
    bus = MemoryBus()
    await _publish_repo(bus)
    good = {"user_id": "u1", "ts": "2026-11-26T09:00:00Z", "amount": 5.0, "merchant": "m"}
    huge = json.dumps({**good, "merchant": "m" * 300_000}).encode()
    await bus.send([Outgoing("transactions", p) for p in (huge, json.dumps(good).encode())])
    runtime, follower = await _rift(bus)
    assert await runtime.step() == 2
    await follower.close()
    (dead,) = _dead(bus)
    assert f"the record is {len(huge)} bytes" in dead.reason
    assert len(bus.records(NAMES.name(ONLINE_WRITES))) == 1


async def test_lag_counts_what_the_group_has_not_consumed_yet() -> None:
    bus = MemoryBus()
    await bus.send([Outgoing(NAMES.name(ONLINE_WRITES), _write(f"u{i}", i)) for i in range(5)])
    shard = ComponentRuntime(bus, NAMES, OnlineStoreShard(NAMES, InMemoryOnlineStore()), instance_id="os-0",
                             group_id="t.os", max_records=2)
    await shard.start()
    topic = f"{NAMES.name(ONLINE_WRITES)}/0"
    assert (await shard.lag())[topic] == 5
    await shard.step()
    assert (await shard.lag())[topic] == 3
    while await shard.step():
        pass
    assert (await shard.lag())[topic] == 0
