"""Tiles of aggregated views: Rift's deltas, merged however they were split, give the engine's values."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from actors.bus import Outgoing
from actors.components.tiling import TileBuilder, aggregate_values, aggregates_stream, served_from_tiles, tile_range
from actors.memory_bus import MemoryBus
from events.data import WriteTiles
from events.specs import AggregateSpec, FeatureViewKind, LifetimeWindowSpec, TimeWindowSpec
from events.topics import ONLINE_WRITES
from tests.unit.fixtures import VIEW
from tests.unit.test_runtime import _bodies, _publish_repo, _rift

BOUNDARY = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
NOW = BOUNDARY + timedelta(minutes=3)  # the tile from 12:00 is still open
AGG_VIEW = replace(VIEW, features=(), aggregation_interval_s=600, aggregates=(
    AggregateSpec("amount_sum_1h_10m", "amount", "sum", TimeWindowSpec(3600)),
    AggregateSpec("amount_count_lifetime_10m", "amount", "count", LifetimeWindowSpec()),
))
EVENTS = [(NOW - timedelta(minutes=m), float(m)) for m in (2, 15, 25, 55, 65, 200)]


def test_deltas_from_any_split_of_the_events_give_the_same_values() -> None:
    whole = TileBuilder(AGG_VIEW)
    first, second = TileBuilder(AGG_VIEW), TileBuilder(AGG_VIEW)
    for i, (at, amount) in enumerate(EVENTS):
        whole.add(("u1",), at, {"amount": amount})
        (first if i % 2 else second).add(("u1",), at, {"amount": amount})
    split = [d.tile for d in (*first.deltas(), *second.deltas())]
    together = [d.tile for d in whole.deltas()]
    assert aggregate_values(AGG_VIEW, split, NOW) == aggregate_values(AGG_VIEW, together, NOW)
    # the hour ends at the last 10-minute boundary (12:00): 15, 25 and 55 minutes ago count; 2 minutes ago
    # is in the tile still open; 65 and 200 are before the hour. The lifetime also ends at 12:00.
    assert aggregate_values(AGG_VIEW, together, NOW) == [15.0 + 25.0 + 55.0, 5]


def test_the_range_read_covers_every_window() -> None:
    lower, upper = tile_range(AGG_VIEW, NOW)
    assert lower is None  # the lifetime window reads from the first tile
    assert upper == BOUNDARY.timestamp()
    hour_only = replace(AGG_VIEW, aggregates=AGG_VIEW.aggregates[:1])
    assert tile_range(hour_only, NOW) == (BOUNDARY.timestamp() - 3600, BOUNDARY.timestamp())
    assert aggregates_stream(AGG_VIEW)
    assert not aggregates_stream(VIEW)
    batch_view = replace(AGG_VIEW, kind=FeatureViewKind.BATCH)
    assert not aggregates_stream(batch_view)  # Rift's stream path never sees it; its jobs write the tiles
    assert served_from_tiles(batch_view)
    assert served_from_tiles(AGG_VIEW)
    assert not served_from_tiles(VIEW)


async def test_rift_sends_tile_deltas_for_aggregated_views() -> None:
    bus = MemoryBus()
    await _publish_repo(bus)
    rift, follower = await _rift(bus)
    registry = follower.registry
    ws = registry.workspace("prod")
    ws.feature_views["user_last"] = AGG_VIEW  # the same source, aggregated instead of last values
    events = [{"user_id": "u1", "ts": at.isoformat(), "amount": amount, "merchant": "m"} for at, amount in EVENTS]
    await bus.send([Outgoing("transactions", json.dumps(e).encode()) for e in events])
    assert await rift.step() == len(EVENTS)
    (write,) = _bodies(bus, ONLINE_WRITES)
    assert isinstance(write, WriteTiles)
    assert aggregate_values(AGG_VIEW, [d.tile for d in write.tiles], NOW) == [95.0, 5]
    await follower.close()
