"""Broker outages: the Kafka broker stops for several seconds during ingest and serving, then starts again.

Ingest resumes with nothing lost (every produced event is counted online and stored offline, each exactly
once), get-features keeps answering from the serving cache and answers 503 within the read timeout where
it cannot, and every component reconnects by itself: the same processes (no restart, no redeploy) serve,
ingest and take commands again afterwards. The test runs its own broker (stopped by PID and started again
with the same config), so the session broker the other tests use is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from deploy.client import bootstrap_admin
from deploy.cluster import Deployment
from deploy.kafka import BrokerConfig, start_broker, stop_broker
from stores.offline import ParquetOfflineStore
from tests.integration.conftest import free_ports
from tests.integration.helpers import apply, broker_of_its_own, get_features, operator_connection, running_deployment
from tests.integration.reliability import assert_every_data_message_audited_once, online_values, produce_fast

pytestmark = pytest.mark.integration

WS = "faults"
SEED = 7
READ_TIMEOUT_S = 3.0
OUTAGE_S = 8.0
BEFORE, AFTER = 20_000, 2_000  # events produced before the outage (taken in across it) and after it
USERS = [f"u{i}" for i in range(50)]
CACHED = [f"c{i}" for i in range(5)]  # read before the outage, so the serving cache holds them
REPO = '''
from datetime import timedelta
from sdk import (Aggregate, Attribute, Entity, FeatureService, Field, LifetimeWindow, StreamFeatureView,
                 StreamSource)

user = Entity(name="user", join_keys=["user_id"])
payments = StreamSource(
    name="payments", topic="{topic}", timestamp_field="ts",
    schema=[Field("user_id", "string"), Field("ts", "timestamp"), Field("amount", "int64")],
)
user_last = StreamFeatureView(
    name="user_last", source=payments, entities=[user], features=[Attribute("amount", "int64", name="last_amount")],
)
user_counts = StreamFeatureView(
    name="user_counts", source=payments, entities=[user], aggregation_interval=timedelta(hours=1),
    features=[Aggregate("amount", "count", LifetimeWindow(), name="payments")],
)
faults = FeatureService(name="faults", features=[user_last, user_counts])
'''


@pytest.fixture(scope="module")
def own_broker() -> Iterator[BrokerConfig]:
    """A broker for this module alone: the test stops and restarts it."""
    with broker_of_its_own() as cfg:
        yield cfg


@pytest.fixture(scope="module")
async def faults_deployment(own_broker: BrokerConfig, ray_cluster: None, topic_prefix: str,
                            tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Deployment]:
    async with running_deployment(own_broker, tmp_path_factory.mktemp("faults-state"), topic_prefix,
                                  gateway_port=free_ports(1)[0], read_timeout_s=READ_TIMEOUT_S,
                                  serving_cache_max_age_s=3600) as running:
        yield running


def payments(users: list[str], count: int, first_seq: int, start: datetime) -> list[dict[str, Any]]:
    """Seeded payments, one per millisecond from `start` + `first_seq` ms (so produced order is time order)."""
    rng = random.Random(SEED + first_seq)
    first_ms = int(start.timestamp() * 1000) + first_seq
    return [{"user_id": rng.choice(users), "ts": first_ms + i, "amount": rng.randrange(1, 100)} for i in range(count)]


def expected_counts(events: list[dict[str, Any]]) -> dict[str, list[int]]:
    ref: dict[str, list[int]] = {}
    for e in events:  # in event-time order
        ref[e["user_id"]] = [e["amount"], ref.get(e["user_id"], [0, 0])[1] + 1]
    return ref


@pytest.mark.timeout(600)
async def test_outage_loses_nothing_serves_from_cache_and_everything_reconnects(
        faults_deployment: Deployment, own_broker: BrokerConfig, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    deployment = faults_deployment
    settings = deployment.settings
    url = deployment.gateway_url
    bootstrap = own_broker.bootstrap
    conn = operator_connection(deployment)
    key = await bootstrap_admin(conn, None)
    topic = f"{settings.topic_prefix}-payments-{uuid.uuid4().hex[:6]}"
    repo_dir = tmp_path / "repo"
    repo_dir.mkdir()
    (repo_dir / "features.py").write_text(REPO.format(topic=topic))
    await apply(conn, repo_dir, WS, key)
    pids = await deployment.pids()
    start = datetime.now(UTC) - timedelta(hours=2)

    warm = payments(CACHED, 50, 0, start)
    await produce_fast(bootstrap, topic, warm)
    cached = await _wait_values(url, key, CACHED, expected_counts(warm))
    before = payments(USERS, BEFORE, len(warm), start)
    after = payments(USERS, AFTER, len(warm) + BEFORE, start)

    timeout = aiohttp.ClientTimeout(total=READ_TIMEOUT_S + 10)  # an answer later than this is a hang
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for user in CACHED:  # the serving cache holds them now
            status, body = await get_features(http, url, WS, "faults", {"user_id": user}, key)
            assert status == 200
        await produce_fast(bootstrap, topic, before)  # ...and while Rift takes them in, the broker goes away
        stopping = time.monotonic()
        await asyncio.to_thread(stop_broker, own_broker)
        stopped = time.monotonic()

        for user in CACHED:  # answered from the cache, with the values it had
            status, body = await get_features(http, url, WS, "faults", {"user_id": user}, key)
            assert status == 200, body
            assert body["result"]["features"] == cached[user]
            assert {f["status"] for f in body["metadata"]["features"]} == {"CACHED_PRESENT"}
        # not in the cache: the store cannot be asked, so a clear 503, not a hang
        asked = time.monotonic()
        status, body = await get_features(http, url, WS, "faults", {"user_id": USERS[0]}, key)
        unavailable_after_s = time.monotonic() - asked
        assert status == 503, body
        assert body["requestError"]["errorType"] == "UNAVAILABLE"
        assert "Kafka" in body["requestError"]["errorMessage"]

        await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))
        await asyncio.to_thread(start_broker, own_broker)
        outage_s = time.monotonic() - stopping  # from the stop request until the broker serves again

        await produce_fast(bootstrap, topic, after)
        everything = warm + before + after
        await _wait_values(url, key, USERS + CACHED, expected_counts(everything))
        status, body = await get_features(http, url, WS, "faults", {"user_id": USERS[1]}, key)
        assert status == 200

    # the same processes did it all: nobody restarted or redeployed anything
    assert await deployment.pids() == pids
    assert all(h.get("alive", True) for h in (await deployment.health()).values())
    # the control plane takes commands again
    await apply(conn, repo_dir, WS, key)
    with ParquetOfflineStore(settings.store_dir("offline_store-0"), readonly=True) as store:
        offline = store.scan(WS, "user_last").select("user_id", "last_amount").collect()
    assert sorted(offline.rows()) == sorted((e["user_id"], e["amount"]) for e in everything)
    await assert_every_data_message_audited_once(deployment, bootstrap, topic, len(everything),
                                                  every_response_sent=False)
    with capsys.disabled():
        print(f"\nbroker outage: {outage_s:.1f}s from stop to serving again, during ingest of {len(before)} "
              f"events; cached keys answered 200 (CACHED_PRESENT), an uncached one 503 after "
              f"{unavailable_after_s:.1f}s (read timeout {READ_TIMEOUT_S:g}s); {len(everything)} produced, "
              f"{len(everything)} counted online and stored offline, each once; no component restarted")


async def _wait_values(url: str, key: str, users: list[str], expected: dict[str, list[int]],
                       timeout_s: float = 180) -> dict[str, list[Any]]:
    """The served [last amount, count] of each user, once they equal `expected`."""
    deadline = time.monotonic() + timeout_s
    got: dict[str, list[Any]] = {}
    while True:
        with contextlib.suppress(AssertionError, aiohttp.ClientError):
            got = await online_values(url, key, WS, "faults", users)
            if got == {u: expected.get(u, [None, 0]) for u in users}:
                return got
        if time.monotonic() > deadline:
            raise AssertionError(f"served values did not reach the produced events in {timeout_s}s: "
                                 f"{json.dumps(got)[:500]}")
        await asyncio.sleep(1.0)
