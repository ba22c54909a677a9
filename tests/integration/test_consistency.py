"""Online/offline consistency: for the same key and time, get-features and training data give the same values.

Seeded events (out of order, some late, some with a null amount, some before the view's feature_start_time)
go to the source topic through a plain Kafka producer; Rift materializes them as tiles online and as input
rows offline. get-features computes the aggregates at its own `now`, which the test cannot pass in (the
gateway has no request-time parameter), so the test reads the clock before and after each request and
takes the offline values at both moments: when they agree, the windows did not move in between, and the
online values must be exactly those. Integer amounts keep sums and means exact on both sides.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import polars as pl
import pytest

from deploy.cluster import Deployment
from sdk.offline import OfflineFeatures
from sdk.repo import load_repo
from stores.offline import ParquetOfflineStore
from tests.integration.helpers import apply, eventually, get_features, operator_connection, produce_plain

pytestmark = pytest.mark.integration

WS = "consistency"
USERS = [f"u{i}" for i in range(6)]
REPO = '''
from datetime import datetime, timedelta, timezone
from sdk import (Aggregate, Entity, FeatureService, Field, LifetimeWindow, StreamFeatureView, StreamSource,
                 TimeWindow, TimeWindowSeries)

user = Entity(name="user", join_keys=["user_id"])
payments = StreamSource(
    name="payments", topic="{topic}", timestamp_field="ts",
    schema=[Field("user_id", "string"), Field("ts", "timestamp"), Field("amount", "int64"),
            Field("merchant", "string")],
)
minute = timedelta(minutes=1)
tiled = StreamFeatureView(
    name="tiled", source=payments, entities=[user], aggregation_interval=minute,
    feature_start_time=datetime.fromisoformat("{start}"),
    features=[
        Aggregate("amount", "count", TimeWindow(10 * minute), name="count_10m"),
        Aggregate("amount", "sum", TimeWindow(60 * minute), name="sum_1h"),
        Aggregate("amount", "mean", TimeWindow(30 * minute, offset=-5 * minute), name="mean_30m_lagged"),
        Aggregate("amount", "last_n", TimeWindow(60 * minute), params={{"n": 3}}, name="last_3"),
        Aggregate("merchant", "approx_count_distinct", TimeWindow(60 * minute), name="merchants_1h"),
        Aggregate("amount", "count", LifetimeWindow(), name="count_lifetime"),
        Aggregate("amount", "sum", TimeWindowSeries(-30 * minute, timedelta(0), 10 * minute), name="sum_by_10m"),
    ],
)
continuous = StreamFeatureView(
    name="continuous", source=payments, entities=[user],
    features=[
        Aggregate("amount", "count", TimeWindow(10 * minute), name="count_10m"),
        Aggregate("amount", "sum", TimeWindow(60 * minute), name="sum_1h"),
        Aggregate("merchant", "last", TimeWindow(60 * minute), name="last_merchant"),
        Aggregate("amount", "count", LifetimeWindow(), name="count_lifetime"),
    ],
)
spend = FeatureService(name="spend", features=[tiled, continuous])
'''


def generate(rng: random.Random, now: datetime, count: int, oldest: timedelta) -> list[dict[str, Any]]:
    """Payments at random microseconds within `oldest` before `now` (at least 2 s before it), in random order."""
    span_us = int((oldest - timedelta(seconds=2)) / timedelta(microseconds=1))
    events = []
    for _ in range(count):
        at = now - timedelta(seconds=2) - timedelta(microseconds=rng.randrange(span_us))
        events.append({"user_id": rng.choice(USERS), "ts": at.isoformat(),
                       "amount": None if rng.random() < 0.1 else rng.randrange(-20, 500),
                       "merchant": rng.choice(["bakery", "books", "fuel", "grocer", None])})
    return events


def served_lifetime_counts(events: Sequence[dict[str, Any]]) -> dict[str, int]:
    """What the continuous view's lifetime count must reach per user once everything is materialized."""
    return {u: sum(1 for e in events if e["user_id"] == u and e["amount"] is not None) for u in USERS}


def offline_at(offline: OfflineFeatures, moment: datetime) -> list[dict[str, Any]]:
    frame = pl.DataFrame({"user_id": USERS, "ts": [moment] * len(USERS)},
                         schema={"user_id": pl.String(), "ts": pl.Datetime("us", "UTC")})
    result = offline.get_features_for_events(frame, "spend", "ts")
    return [{name.replace("__", "."): value for name, value in row.items() if "__" in name}
            for row in result.to_dicts()]


async def online(http: aiohttp.ClientSession, deployment: Deployment, key: str, user: str) -> dict[str, Any]:
    status, body = await get_features(http, deployment.gateway_url, WS, "spend", {"user_id": user}, key)
    assert status == 200, body
    names = [f["name"] for f in body["metadata"]["features"]]
    return dict(zip(names, body["result"]["features"], strict=True))


async def compare(http: aiohttp.ClientSession, deployment: Deployment, key: str, offline: OfflineFeatures) -> int:
    """Every user's online values equal the offline ones at the request's time; how many values compared."""
    compared = 0
    for index, user in enumerate(USERS):
        for _ in range(20):  # a window boundary passed during the request: ask again
            before = datetime.now(UTC)
            served = await online(http, deployment, key, user)
            after = datetime.now(UTC)
            earlier, later = offline_at(offline, before)[index], offline_at(offline, after)[index]
            if earlier == later:
                break
        else:
            raise AssertionError("the windows moved during every request")
        assert served == earlier, user
        compared += len(served)
    return compared


async def test_online_and_offline_values_agree_for_the_same_key_and_time(
        deployment: Deployment, kafka_bootstrap: str, tmp_path: Path, admin_key: str) -> None:
    settings = deployment.settings
    topic = f"{settings.topic_prefix}-payments-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC)
    folder = tmp_path / "repo"
    folder.mkdir()
    start = now - timedelta(minutes=100)  # events before it do not count, online or offline
    (folder / "features.py").write_text(REPO.format(topic=topic, start=start.isoformat()))
    await apply(operator_connection(deployment), folder, WS, admin_key)

    rng = random.Random(20261126)
    first = generate(rng, now, 300, timedelta(hours=2))
    # late arrivals: produced after the first batch is served, most of them older than what is there
    late = generate(rng, datetime.now(UTC), 120, timedelta(minutes=90))
    repo = load_repo(folder)
    offline_dir = settings.store_dir("offline_store-0")
    async with aiohttp.ClientSession() as http:
        for produced, events in ((first, first), (late, first + late)):
            await produce_plain(kafka_bootstrap, topic, [json.dumps(e).encode() for e in produced])
            await _materialized(http, deployment, admin_key, offline_dir, events, start)
            with OfflineFeatures.open(offline_dir, repo, WS) as offline:
                compared = await compare(http, deployment, admin_key, offline)
            assert compared == len(USERS) * 11

    # the lifetime window of the tiled view starts at feature_start_time, the continuous one's does not
    with OfflineFeatures.open(offline_dir, repo, WS) as offline:
        values = offline_at(offline, datetime.now(UTC) + timedelta(minutes=2))
    everything = first + late
    kept = _kept(everything, start)
    assert [v["tiled.count_lifetime"] for v in values] == list(served_lifetime_counts(kept).values())
    assert [v["continuous.count_lifetime"] for v in values] == list(served_lifetime_counts(everything).values())
    assert len(kept) < len(everything)


def _kept(events: Sequence[dict[str, Any]], start: datetime) -> list[dict[str, Any]]:
    return [e for e in events if datetime.fromisoformat(e["ts"]) >= start]


async def _materialized(http: aiohttp.ClientSession, deployment: Deployment, key: str, offline_dir: Path,
                        events: Sequence[dict[str, Any]], start: datetime) -> None:
    """Until every event is in the offline store and counted online (both views' lifetime counts, which
    leave out only the tiles still open, and for the tiled view the events before its start)."""
    kept = _kept(events, start)

    async def online_done() -> bool | None:
        boundary = datetime.now(UTC).replace(second=0, microsecond=0)  # tiles from here on are still open
        expected = (served_lifetime_counts([e for e in kept if datetime.fromisoformat(e["ts"]) < boundary]),
                    served_lifetime_counts(events))
        values = [await online(http, deployment, key, u) for u in USERS]
        counts = ({u: v["tiled.count_lifetime"] for u, v in zip(USERS, values, strict=True)},
                  {u: v["continuous.count_lifetime"] for u, v in zip(USERS, values, strict=True)})
        return True if counts == expected else None

    async def offline_done() -> bool | None:
        if not (offline_dir / "manifest.json").exists():
            return None
        with ParquetOfflineStore(offline_dir, readonly=True) as store:
            rows = [store.scan(WS, view).select(pl.len()).collect().item() for view in ("tiled", "continuous")]
        return True if rows == [len(kept), len(events)] else None

    await eventually(online_done, 90, "every event counted online")
    await eventually(offline_done, 60, "every event in the offline store")
