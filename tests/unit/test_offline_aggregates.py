"""Aggregated views offline: what Rift writes for them, and training data that equals what serving computes.

The randomized comparison with the plain-Python reference is in test_offline_aggregates_properties.py.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from actors.bus import Outgoing
from actors.components.tiling import aggregate_values
from actors.memory_bus import MemoryBus
from engine import aggregate_events
from events.data import Coordinates, FeatureRow, SourceRange, WriteOfflineRows, WriteTiles
from events.errors import InvalidRequest
from events.specs import (
    AggregateSpec,
    DType,
    EntitySpec,
    FeatureServiceSpec,
    FeatureSpec,
    FeatureViewSpec,
    LifetimeWindowSpec,
    RepoSpec,
    TimeWindowSeriesSpec,
    TimeWindowSpec,
)
from events.topics import OFFLINE_WRITES, ONLINE_WRITES
from sdk.offline import OfflineFeatures, workspace_of
from stores.offline import OfflineWrite, ParquetOfflineStore
from tests.unit.fixtures import VIEW
from tests.unit.test_runtime import _bodies, _publish_repo, _rift

NOW = datetime(2026, 11, 26, 12, 3, tzinfo=UTC)
AGGREGATES = (
    AggregateSpec("amount_sum_1h", "amount", "sum", TimeWindowSpec(3600)),
    AggregateSpec("amount_count_lifetime", "amount", "count", LifetimeWindowSpec()),
    AggregateSpec("merchants_last_2", "merchant", "last_distinct_n", TimeWindowSpec(7200), {"n": 2}),
    AggregateSpec("users_distinct", "user_id", "approx_count_distinct", LifetimeWindowSpec(), {"precision": 8}),
    AggregateSpec("amount_hourly", "amount", "sum", TimeWindowSeriesSpec(-3 * 3600, 0, 3600, 3600)),
)
AGG_VIEW = replace(VIEW, features=(), aggregation_interval_s=600, aggregates=AGGREGATES)
EVENTS = [(NOW - timedelta(minutes=m), float(m), f"m{m % 3}") for m in (2, 15, 25, 55, 65, 200, 15)]


def _repo(view: FeatureViewSpec) -> RepoSpec:
    return RepoSpec(entities=(EntitySpec("user", ("user_id",)),), feature_views=(view,),
                    feature_services=(FeatureServiceSpec("svc", (view.name,)),))


def _events_frame(users: list[str | None], times: list[datetime | None]) -> pl.DataFrame:
    schema = {"user_id": pl.String(), "ts": pl.Datetime("us", "UTC")}
    return pl.DataFrame({"user_id": users, "ts": times}, schema=schema)


async def _materialize(view: FeatureViewSpec) -> MemoryBus:
    bus = MemoryBus()
    await _publish_repo(bus)
    rift, follower = await _rift(bus)
    follower.registry.workspace("prod").feature_views["user_last"] = view
    records = [{"user_id": "u1", "ts": at.isoformat(), "amount": amount, "merchant": merchant}
               for at, amount, merchant in EVENTS]
    await bus.send([Outgoing("transactions", json.dumps(r).encode()) for r in records])
    assert await rift.step() == len(EVENTS)
    await follower.close()
    return bus


async def test_rift_writes_the_input_rows_of_aggregated_views_offline_and_they_give_the_served_values(
        tmp_path: Path) -> None:
    bus = await _materialize(AGG_VIEW)
    (tiles,) = _bodies(bus, ONLINE_WRITES)
    (offline_write,) = _bodies(bus, OFFLINE_WRITES)
    assert isinstance(tiles, WriteTiles)
    assert isinstance(offline_write, WriteOfflineRows)
    assert offline_write.join_keys == ("user_id",)
    # one row per event: the key, the time and each input column once (user_id is the key already)
    assert [(r.entity_key, r.event_time, r.values) for r in offline_write.rows] == [
        (("u1",), at, {"amount": amount, "merchant": merchant}) for at, amount, merchant in EVENTS]

    with ParquetOfflineStore(tmp_path / "offline") as store:
        store.append([OfflineWrite(Coordinates("offline-writes", 0, 0), "prod", offline_write, "e0")])
        offline = OfflineFeatures(store, workspace_of(_repo(AGG_VIEW), "prod"))
        result = offline.get_features_for_events(_events_frame(["u1", "u2"], [NOW, NOW]), "svc", "ts")
    served = aggregate_values(AGG_VIEW, [d.tile for d in tiles.tiles], NOW)
    offline_values = [result[f"user_last__{a.name}"].to_list()[0] for a in AGGREGATES]
    assert offline_values == [list(v) if isinstance(v, tuple) else v for v in served]
    # 15, 15, 25 and 55 minutes ago are in the hour that ends at 12:00; the open tile (2 minutes ago) is not
    assert offline_values[0] == 15.0 + 15.0 + 25.0 + 55.0
    # an entity without events: empty windows, as serving gives them
    assert [result[f"user_last__{a.name}"].to_list()[1] for a in AGGREGATES] == [
        None, 0, None, 0, [None, None, None]]


async def test_events_before_feature_start_time_are_not_aggregated_online_or_offline() -> None:
    start = NOW - timedelta(minutes=60)
    bus = await _materialize(replace(AGG_VIEW, feature_start_time=start))
    (tiles,) = _bodies(bus, ONLINE_WRITES)
    (offline_write,) = _bodies(bus, OFFLINE_WRITES)
    assert [r.event_time for r in offline_write.rows] == [at for at, _, _ in EVENTS if at >= start]
    assert aggregate_values(AGG_VIEW, [d.tile for d in tiles.tiles], NOW)[1] == 4  # lifetime count at 12:00


async def test_aggregated_views_with_offline_false_write_nothing_offline() -> None:
    bus = await _materialize(replace(AGG_VIEW, offline=False))
    assert _bodies(bus, OFFLINE_WRITES) == []
    assert len(_bodies(bus, ONLINE_WRITES)) == 1


# --- many entities, one sweep ------------------------------------------------------------------------------

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SPECS = (
    AggregateSpec("count_2h", "amount", "count", TimeWindowSpec(7200)),
    AggregateSpec("sum_30m_lagged", "amount", "sum", TimeWindowSpec(1800, -600)),
    AggregateSpec("mean_life", "amount", "mean", LifetimeWindowSpec()),
    AggregateSpec("last_3", "amount", "last_n", TimeWindowSpec(3600), {"n": 3}),
    AggregateSpec("max_series", "amount", "max", TimeWindowSeriesSpec(-4 * 1800, 0, 1800, 3600)),
    AggregateSpec("distinct", "amount", "approx_count_distinct", TimeWindowSpec(5400), {"precision": 10}),
)


@pytest.mark.parametrize("interval", [None, 300])
def test_many_entities_and_events_get_what_serving_computes_at_each_event(tmp_path: Path,
                                                                           interval: int | None) -> None:
    """Entities interleaved in time, rows written out of order in several commits, events unsorted and
    repeated: each value equals the engine's from that entity's events at that time."""
    rng = random.Random(4)
    view = FeatureViewSpec("spend", ("user",), "src", (), aggregates=SPECS, aggregation_interval_s=interval)
    written = [(f"u{rng.randrange(40)}", T0 + timedelta(seconds=rng.randrange(12 * 3600)),
                rng.choice([None, rng.randrange(100)])) for _ in range(1500)]
    asked = [(f"u{rng.randrange(45)}", T0 + timedelta(seconds=rng.randrange(14 * 3600))) for _ in range(600)]
    asked += asked[:50]
    with ParquetOfflineStore(tmp_path / "offline") as store:
        for offset in range(0, len(written), 500):
            rows = tuple(FeatureRow((u,), at, {"amount": a}) for u, at, a in written[offset:offset + 500])
            write = WriteOfflineRows("spend", ("user_id",), rows, SourceRange("src", 0, offset, offset))
            store.append([OfflineWrite(Coordinates("w", 0, offset), "prod", write, f"e{offset}")])
        offline = OfflineFeatures(store, workspace_of(_repo(view), "prod"))
        result = offline.get_features_for_events(_events_frame(*map(list, zip(*asked, strict=True))), "svc", "ts")
    for index, (user, at) in enumerate(asked):
        events = [(when.timestamp(), amount) for u, when, amount in written if u == user]
        for spec in SPECS:
            expected = aggregate_events(spec, interval, events, at.timestamp())
            got = result[f"spend__{spec.name}"][index]
            got = tuple(got.to_list()) if isinstance(got, pl.Series) else got
            assert got == expected, (user, at, spec.name)


# --- ranges and errors -------------------------------------------------------------------------------------


def test_a_range_gives_the_values_from_the_moment_each_tile_is_served(tmp_path: Path) -> None:
    view = FeatureViewSpec("spend", ("user",), "src", (), aggregates=SPECS[:3], aggregation_interval_s=600)
    written = [("u1", T0 + timedelta(minutes=m), m) for m in (1, 5, 12, 31, 95)]
    written.append(("u2", T0 + timedelta(minutes=3), 7))
    with ParquetOfflineStore(tmp_path / "offline") as store:
        rows = tuple(FeatureRow((u,), at, {"amount": a}) for u, at, a in written)
        store.append([OfflineWrite(Coordinates("w", 0, 0), "prod",
                                   WriteOfflineRows("spend", ("user_id",), rows, SourceRange("s", 0, 0, 0)), "e0")])
        offline = OfflineFeatures(store, workspace_of(_repo(view), "prod"))
        ranged = offline.get_features_in_range("spend", T0, T0 + timedelta(minutes=60))
        only_u2 = offline.get_features_in_range("spend", T0, T0 + timedelta(minutes=60),
                                                entities=pl.DataFrame({"user_id": ["u2"]}))
        at_starts = offline.get_features_for_events(
            ranged.select("user_id", pl.col("_valid_from").alias("ts")), "svc", "ts")
        with pytest.raises(InvalidRequest, match="no single `_written_by`"):
            offline.get_features_in_range("spend", T0, T0 + timedelta(hours=1), include_lineage=True)
    minutes = [int((t - T0).total_seconds() // 60) for t in ranged["_valid_from"]]
    assert list(zip(ranged["user_id"], minutes, strict=True)) == [("u1", 10), ("u2", 10), ("u1", 20), ("u1", 40)]
    assert (ranged["_valid_to"] - ranged["_valid_from"]).to_list() == [timedelta(minutes=10)] * 4
    assert ranged["count_2h"].to_list() == [2, 1, 3, 4]
    for spec in SPECS[:3]:
        assert ranged[spec.name].to_list() == at_starts[f"spend__{spec.name}"].to_list()
    assert only_u2["user_id"].to_list() == ["u2"]


def test_keys_of_another_type_than_the_stored_ones_are_refused(tmp_path: Path) -> None:
    view = FeatureViewSpec("spend", ("user",), "src", (), aggregates=SPECS[:1])
    with ParquetOfflineStore(tmp_path / "offline") as store:
        rows = (FeatureRow(("u1",), T0, {"amount": 1}),)
        store.append([OfflineWrite(Coordinates("w", 0, 0), "prod",
                                   WriteOfflineRows("spend", ("user_id",), rows, SourceRange("s", 0, 0, 0)), "e0")])
        offline = OfflineFeatures(store, workspace_of(_repo(view), "prod"))
        with pytest.raises(InvalidRequest, match="join key 'user_id' is Int64 in the events but String"):
            offline.get_features_for_events(pl.DataFrame({"user_id": [1], "ts": [T0]}), "svc", "ts")


def test_a_view_never_written_gives_empty_windows(tmp_path: Path) -> None:
    unused = FeatureSpec("unused", "amount", DType.INT64)
    view = FeatureViewSpec("spend", ("user",), "src", (unused,), aggregates=SPECS[:3])
    with ParquetOfflineStore(tmp_path / "offline") as store:
        offline = OfflineFeatures(store, workspace_of(_repo(view), "prod"))
        result = offline.get_features_for_events(_events_frame(["u1"], [T0]), "svc", "ts")
    assert result.row(0)[2:] == (0, None, None)


def test_a_service_mixing_attribute_and_aggregated_views_keeps_the_events_order(tmp_path: Path) -> None:
    spend = FeatureViewSpec("spend", ("user",), "src", (), aggregates=SPECS[:1], aggregation_interval_s=3600)
    last = FeatureViewSpec("last", ("user",), "src", (FeatureSpec("amount", "amount", DType.INT64),))
    repo = RepoSpec(entities=(EntitySpec("user", ("user_id",)),), feature_views=(spend, last),
                    feature_services=(FeatureServiceSpec("svc", ("last", "spend")),))
    rows = tuple(FeatureRow(("u1",), T0 + timedelta(minutes=m), {"amount": m}) for m in (10, 70, 130))
    with ParquetOfflineStore(tmp_path / "offline") as store:
        store.append([OfflineWrite(Coordinates("w", 0, i), "prod",
                                   WriteOfflineRows(view, ("user_id",), rows, SourceRange("s", 0, i, i)), f"e{i}")
                      for i, view in enumerate(("spend", "last"))])
        offline = OfflineFeatures(store, workspace_of(repo, "prod"))
        asked = [T0 + timedelta(hours=3), T0 + timedelta(minutes=71), T0, T0 + timedelta(hours=2)]
        result = offline.get_features_for_events(
            pl.DataFrame({"n": [1, 2, 3, 4], "user_id": ["u1"] * 4, "ts": asked}), "svc", "ts")
    assert result.columns == ["n", "user_id", "ts", "last__amount", "spend__count_2h"]
    assert result["n"].to_list() == [1, 2, 3, 4]
    assert result["last__amount"].to_list() == [130, 70, None, 70]
    # two hours ending at the last full hour: 03:00 sees 01:10 and 02:10, 01:11 sees 00:10, 02:00 sees both
    assert result["spend__count_2h"].to_list() == [2, 1, 0, 2]
