"""End to end: events produced by a plain Kafka producer come back through get-features over HTTP,
land in the offline Parquet store, and every cross-plane message has exactly one audit record."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import polars as pl
import pytest

from deploy.cluster import Deployment
from events.codec import CODEC
from events.data import RecordDeadLettered
from events.topics import (
    DEAD_LETTER,
    OFFLINE_WRITES,
    ONLINE_WRITES,
)
from sdk.offline import OfflineFeatures
from sdk.offline_lineage import offline_row_writer
from sdk.repo import load_repo
from stores.offline import ParquetOfflineStore
from tests.integration.helpers import (
    apply,
    auth,
    eventually,
    operator_connection,
    produce_plain,
    read_topic,
    write_repo,
)
from tests.integration.helpers import get_features as _get_features
from tests.integration.reliability import assert_every_data_message_audited_once

pytestmark = pytest.mark.integration

WS = "prod"
EVENTS = [
    {"user_id": "u1", "ts": "2026-11-26T09:00:00Z", "amount": 12.5, "merchant": "bakery"},
    {"user_id": "u2", "ts": "2026-11-26T09:01:00Z", "amount": 250.0, "merchant": "electronics"},
    {"user_id": "u1", "ts": "2026-11-26T09:05:00Z", "amount": 42.0, "merchant": "books"},
    # arrives last but happened first: must not replace u2's newer value online
    {"user_id": "u2", "ts": "2026-11-26T08:59:00Z", "amount": 99.0, "merchant": "late"},
]
MALFORMED = [b"{not json", json.dumps({"user_id": "u3", "ts": "2026-11-26T09:00:00Z", "amount": "lots"}).encode()]


async def test_events_flow_from_kafka_to_http_and_parquet_with_every_flow_audited(
        deployment: Deployment, kafka_bootstrap: str, tmp_path: Path, admin_key: str) -> None:
    settings = deployment.settings
    names = settings.topics
    topic = f"{settings.topic_prefix}-transactions-{uuid.uuid4().hex[:6]}"
    conn = operator_connection(deployment)
    applied = await apply(conn, write_repo(tmp_path / "repo", topic), WS, admin_key)
    assert applied["object_count"] == 4

    payloads = [json.dumps(e).encode() for e in EVENTS[:2]] + MALFORMED + [json.dumps(e).encode() for e in EVENTS[2:]]
    await produce_plain(kafka_bootstrap, topic, payloads)

    url = deployment.gateway_url
    requests = 0

    async def get_features(*args: Any) -> tuple[int, Any]:
        nonlocal requests
        requests += 1
        return await _get_features(*args)

    async with aiohttp.ClientSession() as http:
        async def latest_u1() -> Any:
            status, body = await get_features(http, url, WS, "fraud", {"user_id": "u1"}, admin_key)
            return body if status == 200 and body["result"]["features"][0] == 42.0 else None

        body = await eventually(latest_u1, 60, "u1's latest transaction to be served")
        assert body["result"]["features"] == [42.0, "books"]
        assert [f["name"] for f in body["metadata"]["features"]] == ["user_last.last_amount", "user_last.merchant"]
        assert {f["status"] for f in body["metadata"]["features"]} == {"PRESENT"}

        status, body = await get_features(http, url, WS, "fraud", {"user_id": "u2"}, admin_key)
        assert status == 200
        assert body["result"]["features"] == [250.0, "electronics"]  # the late, older event did not win

        status, body = await get_features(http, url, WS, "fraud", {"user_id": "nobody"}, admin_key)
        assert status == 200
        assert body["result"]["features"] == [None, None]
        assert {f["status"] for f in body["metadata"]["features"]} == {"MISSING_DATA"}

        # the offline store has every valid event, as Parquet rows
        offline_dir = settings.store_dir("offline_store-0")

        async def offline_rows() -> Any:
            with ParquetOfflineStore(offline_dir, readonly=True) as store:
                frame = store.scan(WS, "user_last").collect()
            return frame if frame.height == len(EVENTS) else None

        frame = await eventually(offline_rows, 30, "all valid events in the offline store")
        got = sorted(zip(frame["user_id"].to_list(), frame["event_time"].to_list(), frame["last_amount"].to_list(),
                         frame["merchant"].to_list(), strict=True))
        assert got == sorted((e["user_id"], datetime.fromisoformat(e["ts"]), e["amount"], e["merchant"])
                             for e in EVENTS)

        # online and offline agree: what get-features serves now is what a point-in-time read gives now
        users = ["u1", "u2", "nobody"]
        online = [(await get_features(http, url, WS, "fraud", {"user_id": u}, admin_key))[1]["result"]["features"]
                  for u in users]
        repo = load_repo(tmp_path / "repo")
        with OfflineFeatures.open(offline_dir, repo, WS) as offline:
            now = datetime.now(UTC)
            table = offline.get_features_for_events(pl.DataFrame({"user_id": users, "ts": [now] * 3}), "fraud", "ts")
        offline_values = [[row["user_last__last_amount"], row["user_last__merchant"]] for row in table.to_dicts()]
        assert online == offline_values

    # malformed records went to the dead-letter topic with the reason; processing went on
    dead = [CODEC.decode(r.value).body for r in await read_topic(kafka_bootstrap, names.name(DEAD_LETTER))]
    assert all(isinstance(d, RecordDeadLettered) for d in dead)
    assert sorted(d.payload for d in dead) == sorted(MALFORMED)
    assert any("expected float64" in d.reason for d in dead)

    await assert_every_data_message_audited_once(deployment, kafka_bootstrap, topic, len(payloads),
                                                 requests_served=requests)
    await _assert_lineage_names_the_source_offsets(deployment, topic, admin_key, payloads)


async def _assert_lineage_names_the_source_offsets(deployment: Deployment, topic: str, admin_key: str,
                                                   payloads: list[bytes]) -> None:
    """u1's served value came from its latest event: lineage must name that event's exact offset."""
    latest_u1 = max((json.loads(p)["ts"], offset) for offset, p in enumerate(payloads)
                    if p.startswith(b"{\"") and json.loads(p).get("user_id") == "u1")[1]
    body = {"params": {"workspace_name": WS, "feature_service_name": "fraud", "join_key_map": {"user_id": "u1"}}}
    url = deployment.gateway_url
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/api/v1/lineage", json=body, headers=auth(admin_key)) as resp:
            assert resp.status == 200, await resp.text()
            (chain,) = (await resp.json())["lineage"]
        assert chain["feature_view"] == "user_last"
        assert chain["write"]["topic"] == deployment.settings.topics.name(ONLINE_WRITES)
        (source,) = [s for s in chain["sources"] if s["topic"] == topic]
        assert source["first_offset"] <= latest_u1 <= source["last_offset"]
        assert source["from"] == "customer_app"
        params = {"flow": "F5", "correlation_id": chain["correlation_id"], "limit": "10"}
        async with http.get(f"{url}/api/v1/audit/flows", params=params, headers=auth(admin_key)) as resp:
            records = (await resp.json())["records"]
        assert records
        assert {r["flow"] for r in records} == {"F5"}
        assert {r["correlation_id"] for r in records} == {chain["correlation_id"]}
        async with http.get(f"{url}/api/v1/audit/flows", params={"flow": "F10"}, headers=auth(admin_key)) as resp:
            assert resp.status == 400

        # offline: the training row of u1 as of now names the offline write, which names the same offset
        with ParquetOfflineStore(deployment.settings.store_dir("offline_store-0"), readonly=True) as store:
            row = offline_row_writer(store, WS, "user_last", {"user_id": "u1"}, datetime.now(UTC))
        assert row is not None
        async with http.get(f"{url}/api/v1/lineage/writes/{row.written_by}", headers=auth(admin_key)) as resp:
            assert resp.status == 200, await resp.text()
            offline_chain = await resp.json()
        assert offline_chain["write"]["topic"] == deployment.settings.topics.name(OFFLINE_WRITES)
        (offline_source,) = [s for s in offline_chain["sources"] if s["topic"] == topic]
        assert offline_source["first_offset"] <= latest_u1 <= offline_source["last_offset"]
