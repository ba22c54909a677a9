"""Online-store replies larger than the broker's message limit (1 MiB by default), against a real deployment:
a batch whose reply would not fit one Kafka message is answered whole (in parts), an answer too large on its
own is a per-feature ERROR, and the store shard keeps answering everyone afterwards."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from actors.bus import Outgoing
from actors.kafka_bus import KafkaBus
from deploy.cluster import Deployment
from deploy.kafka import BrokerConfig, BrokerHandle
from events.codec import CODEC
from events.errors import MessageTooLarge
from events.flows import Flow
from events.topics import AUDIT, ONLINE_REPLIES
from tests.integration.helpers import (
    apply,
    auth,
    broker_users,
    get_features,
    operator_connection,
    read_topic,
    running_deployment,
)

pytestmark = pytest.mark.integration

BLOB_REPO = '''
from sdk import Attribute, Entity, FeatureService, Field, PushSource, StreamFeatureView

user = Entity(name="user", join_keys=["user_id"])
blobs = PushSource(name="blobs", timestamp_field="ts",
                   schema=[Field("user_id", "string"), Field("ts", "timestamp"), Field("a", "string"),
                           Field("b", "string"), Field("c", "string")])
wide = StreamFeatureView(name="wide", source=blobs, entities=[user], features=[
    Attribute("a", "string"), Attribute("b", "string"), Attribute("c", "string")])
profile = FeatureService(name="profile", features=[wide])
'''
VALUE_BYTES = 200_000  # one value; 8 of them make a reply well over 1 MiB
BATCH = 8


@pytest.fixture(scope="module")
async def deployment(kafka_config: BrokerConfig, kafka_broker: BrokerHandle, ray_cluster: None,
                     topic_prefix: str,
                     tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Deployment]:
    """The default limits, but records up to 900 KiB may be ingested (a row of three 200 kB values) and the
    serving cache is off, so every read goes to the store."""
    async with running_deployment(kafka_config, tmp_path_factory.mktemp("state"), topic_prefix,
                                  max_record_bytes=900 * 1024, serving_cache_max_age_s=0) as running:
        yield running


@pytest.fixture(scope="module")
async def workspace(deployment: Deployment, admin_key: str,
                    tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("blob_repo")
    (folder / "features.py").write_text(BLOB_REPO)
    name = f"blobs_{uuid.uuid4().hex[:6]}"
    await apply(operator_connection(deployment), folder, name, admin_key)
    return name


def _value(user: str, field: str, size: int = VALUE_BYTES) -> str:
    return (f"{user}/{field}:" * (size // 8 + 1))[:size]


async def _ingest(url: str, key: str, ws: str, user: str, fields: dict[str, str]) -> None:
    body = {"workspace_name": ws, "records": {"blobs": [
        {"record": {"user_id": user, "ts": datetime.now(UTC).isoformat(), **fields}}]}}
    async with aiohttp.ClientSession() as http, http.post(f"{url}/ingest", json=body, headers=auth(key)) as resp:
        assert resp.status == 200, await resp.text()


async def _batch(url: str, key: str, ws: str, users: list[str]) -> tuple[int, Any]:
    body = {"params": {"workspace_name": ws, "feature_service_name": "profile",
                       "request_data": [{"join_key_map": {"user_id": u}} for u in users],
                       "metadata_options": {"include_serving_status": True}}}
    async with aiohttp.ClientSession() as http, http.post(f"{url}/api/v1/feature-service/get-features-batch",
                                                          json=body, headers=auth(key)) as resp:
        return resp.status, await resp.json()


async def _reply_audits(deployment: Deployment, bootstrap: str) -> list[Any]:
    names = deployment.settings.topics
    records = [CODEC.decode(r.value).body for r in await read_topic(bootstrap, names.name(AUDIT))]
    return [a for a in records if a.flow is Flow.F3 and a.topic == names.name(ONLINE_REPLIES)]


async def test_a_batch_whose_reply_exceeds_a_kafka_message_is_answered_whole(
        deployment: Deployment, workspace: str, admin_key: str, kafka_bootstrap: str) -> None:
    url = deployment.gateway_url
    users = [f"user{i}" for i in range(BATCH)]
    for user in users:  # one by one: each ingest request is one record of 200 kB
        await _ingest(url, admin_key, workspace, user, {"a": _value(user, "a"), "b": "", "c": ""})
    status, answer = await _batch(url, admin_key, workspace, users)
    assert status == 200, answer
    assert [r["features"] for r in answer["result"]] == [[_value(u, "a"), "", ""] for u in users]
    assert {s for r in answer["result"] for s in r["statuses"]} == {"PRESENT"}
    # the store sent its answer in several messages under the broker's limit, each with its own audit record
    big = [a for a in await _reply_audits(deployment, kafka_bootstrap) if a.byte_count > VALUE_BYTES]
    assert len(big) >= 2
    assert sum(a.byte_count for a in big) > 1024 * 1024
    assert all(a.byte_count < 1024 * 1024 for a in big)
    async with aiohttp.ClientSession() as http:  # and the shard answers the next request as usual
        status, single = await get_features(http, url, workspace, "profile", {"user_id": users[0]}, admin_key)
    assert status == 200, single
    assert single["result"]["features"][0] == _value(users[0], "a")


async def test_an_answer_too_large_for_any_reply_is_an_error_for_its_features_only(
        deployment: Deployment, workspace: str, admin_key: str) -> None:
    url = deployment.gateway_url
    await _ingest(url, admin_key, workspace, "huge", {f: _value("huge", f) for f in "abc"})  # 600 kB > 512 KiB
    await _ingest(url, admin_key, workspace, "small", {"a": "x", "b": "y", "c": "z"})
    async with aiohttp.ClientSession() as http:
        status, single = await get_features(http, url, workspace, "profile", {"user_id": "huge"}, admin_key)
    assert status == 200, single
    assert single["result"]["features"] == [None, None, None]
    metadata = single["metadata"]["features"]
    assert {m["status"] for m in metadata} == {"ERROR"}
    assert all("more than one reply may carry" in m["errorMessage"] for m in metadata)
    status, answer = await _batch(url, admin_key, workspace, ["small", "huge", "small"])
    assert status == 200, answer
    assert [r["statuses"] for r in answer["result"]] == [["PRESENT"] * 3, ["ERROR"] * 3, ["PRESENT"] * 3]
    assert answer["result"][0]["features"] == ["x", "y", "z"]
    assert "errorMessages" in answer["result"][1]


async def test_the_kafka_bus_refuses_a_message_over_its_limit_and_the_next_transaction_goes_through(
        kafka_bootstrap: str) -> None:
    topic = f"large-{uuid.uuid4().hex[:8]}"
    bus = KafkaBus(kafka_bootstrap, client_id="large-test", credentials=broker_users(kafka_bootstrap).operator,
                   max_message_bytes=10_000)
    await bus.ensure_topics({topic: 1})
    producer = await bus.transactional_producer(f"large-test-{uuid.uuid4().hex[:8]}")
    try:
        with pytest.raises(MessageTooLarge, match="larger than Kafka takes"):
            async with producer.transaction() as txn:
                await txn.send_all([Outgoing(topic, b"small"), Outgoing(topic, b"x" * 20_000)])
        async with producer.transaction() as txn:
            await txn.send_all([Outgoing(topic, b"after")])
    finally:
        await producer.close()
        await bus.close()
    assert [r.value for r in await read_topic(kafka_bootstrap, topic)] == [b"after"]  # the aborted one is gone
